"""QA findings on the python adapter and the weight-free baselines: module constants in the code
fingerprint, targets that fail at import or construction, baseline argument bounds, typed model
arguments for objects, and the hint for a per-sample function given as a batch one (and back)."""

from __future__ import annotations

import sys
import textwrap

import pytest

from soebench.errors import ConfigError, InputError
from soebench.models import MODELS, build_model
from soebench.models.python_adapter import PythonInpainter, fingerprint, from_object, import_target
from tests.models.conftest import make_request


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    """A folder on sys.path for throw-away modules (removed from sys.modules afterwards)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        sys.modules.pop(name, None)


def _write(folder, name, source):
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


# -- 1. module-level constants are part of the code fingerprint ------------------------------


def _fill_fn(value, namespace=None):
    """``fill`` reading the global FILL (and TABLE) of a fresh module namespace."""
    ns = {"FILL": value, "TABLE": (1, 2)} if namespace is None else namespace
    exec("def fill(request):\n    out = request.image.copy()\n    out[request.mask] = FILL + TABLE[0] - 1\n"
         "    return out\n", ns)
    return ns["fill"]


def test_a_changed_module_constant_changes_the_fingerprint():
    assert fingerprint(_fill_fn(128)) == fingerprint(_fill_fn(128))
    assert fingerprint(_fill_fn(128)) != fingerprint(_fill_fn(0))
    ns = {"FILL": 128, "TABLE": (1, 2)}
    before = fingerprint(_fill_fn(None, ns))
    ns["TABLE"] = (1, 3)
    assert fingerprint(ns["fill"]) != before  # tuples of plain values count too
    ns["TABLE"] = [1, 2]
    assert fingerprint(ns["fill"]) != before  # and a list is not the same tuple


def test_constants_in_nested_code_and_class_attributes_count():
    def make(value):
        ns = {"K": value}
        exec("def f(requests):\n    return [(lambda r: r.image * K)(r) for r in requests]\n", ns)
        return ns["f"]

    assert fingerprint(make(1)) != fingerprint(make(2))  # K is read inside a lambda in a comprehension

    def model(fill):
        class Model:
            FILL = fill

            def inpaint(self, requests):
                return [self.FILL for _ in requests]

        return Model()

    assert fingerprint(model(1)) == fingerprint(model(1)) != fingerprint(model(2))


def test_globals_that_are_not_plain_values_are_not_keyed():
    """A module or a big object is not read (its repr is not its state); a global the code does
    not name does not count, so editing an unrelated constant keeps the cache."""
    ns = {"FILL": 1, "OTHER": 1, "helper": object()}
    exec("def f(r):\n    return helper, FILL\n", ns)
    before = fingerprint(ns["f"])
    ns["OTHER"] = 2
    ns["helper"] = object()
    assert fingerprint(ns["f"]) == before


def test_resume_after_a_module_constant_changed_recomputes(module_dir):
    """The QA scenario: FILL = 128 then FILL = 0 in the target's module gives another cache key."""
    path = _write(module_dir, "glob_mod_qa", """
        FILL = 128
        def fill(request):
            out = request.image.copy(); out[request.mask] = FILL; return out
    """)
    first, _ = build_model("python", "target=glob_mod_qa:fill,per_sample=true")
    token = first.cache_token()
    path.write_text(path.read_text().replace("FILL = 128", "FILL = 0"))
    sys.modules.pop("glob_mod_qa")
    second, _ = build_model("python", "target=glob_mod_qa:fill,per_sample=true")
    assert second.cache_token() != token
    assert (second.inpaint([make_request()])[0][make_request().mask] == 0).all()


# -- 2. import and construction failures are one-line ConfigErrors ----------------------------


def test_a_module_raising_at_import_is_a_config_error(module_dir):
    path = _write(module_dir, "badimport_qa", 'raise RuntimeError("import-time failure")\n')
    with pytest.raises(ConfigError) as info:
        import_target("badimport_qa:fn")
    msg = str(info.value)
    assert "badimport_qa:fn" in msg and "RuntimeError: import-time failure" in msg
    assert f"{path}:1" in msg


def test_a_syntax_error_names_the_file_and_line(module_dir):
    path = _write(module_dir, "syntaxerr_qa", "x = 1\ndef f(:\n    pass\n")
    with pytest.raises(ConfigError, match="SyntaxError") as info:
        import_target("syntaxerr_qa:f")
    assert f"{path}:2" in str(info.value)


def test_an_import_error_inside_the_module_names_where(module_dir):
    path = _write(module_dir, "needs_dep_qa", "import os\nimport no_such_dependency_qa\n")
    with pytest.raises(ConfigError, match="no_such_dependency_qa") as info:
        import_target("needs_dep_qa:f")
    assert f"{path}:2" in str(info.value)


def test_sys_exit_at_import_is_a_config_error(module_dir):
    _write(module_dir, "exits_qa", "import sys\nsys.exit(3)\n")
    with pytest.raises(ConfigError, match="sys.exit"):
        import_target("exits_qa:f")


def test_soebench_errors_and_ctrl_c_at_import_propagate(module_dir):
    _write(module_dir, "raises_input_qa", "from soebench.errors import InputError\nraise InputError('own message')\n")
    with pytest.raises(InputError, match="^own message$"):
        import_target("raises_input_qa:f")
    _write(module_dir, "ctrl_c_qa", "raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        import_target("ctrl_c_qa:f")


@pytest.mark.parametrize("target", [":grey", "mod:", "mod:a..b", ".relative:f"])
def test_malformed_targets_are_config_errors(target):
    with pytest.raises(ConfigError, match="package.module:callable"):
        import_target(target)


def test_a_class_whose_init_raises_is_a_config_error():
    class InitRaises:
        def __init__(self):
            raise RuntimeError("init failed")

        def inpaint(self, requests):
            return []

    with pytest.raises(ConfigError, match=r"InitRaises\(\) raised RuntimeError: init failed") as info:
        from_object(InitRaises)
    assert f"{__file__}:" in str(info.value)


def test_a_class_needing_arguments_still_says_so_and_a_typeerror_inside_init_is_reported_as_raised():
    class NeedsArgs:
        def __init__(self, strength):
            self.strength = strength

        def inpaint(self, requests):
            return []

    class TypeErrorInside:
        def __init__(self):
            len(5)

        def inpaint(self, requests):
            return []

    with pytest.raises(ConfigError, match="without arguments"):
        from_object(NeedsArgs)
    with pytest.raises(ConfigError, match=r"TypeErrorInside\(\) raised TypeError"):
        from_object(TypeErrorInside)


# -- 3. baseline arguments are bounded ----------------------------------------------------------


@pytest.mark.parametrize("name,args,match", [
    ("opencv-telea", "radius=inf", "finite"),
    ("opencv-ns", "radius=nan", "finite"),
    ("opencv-telea", "radius=1e9", "<= 100"),
    ("opencv-telea", "radius=101", "<= 100"),
    ("opencv-telea", "radius=0", "> 0"),
    ("opencv-telea", "dilate=100000", "<= 256"),
    ("opencv-ns", "dilate=-1", ">= 0"),
    ("mean-fill", "ring=100000", "<= 256"),
    ("mean-fill", "dilate=257", "<= 256"),
    ("mean-fill", "ring=0", ">= 1"),
])
def test_baseline_arguments_out_of_bounds_are_config_errors(name, args, match):
    with pytest.raises(ConfigError, match=match):
        MODELS.create(name, args)


@pytest.mark.parametrize("name,args", [
    ("opencv-telea", "radius=100,dilate=256"),
    ("opencv-ns", "radius=0.5,dilate=0"),
    ("mean-fill", "ring=256,dilate=256"),
])
def test_baseline_arguments_at_the_bounds_are_accepted(name, args):
    MODELS.create(name, args)


# -- 4. an object's model arguments are recorded converted --------------------------------------


def test_object_model_args_are_recorded_as_converted_values():
    _, args = build_model(lambda r: r.image, "per_sample=true,version=3")
    assert args == {"per_sample": True, "version": "3"}
    _, args = build_model(lambda rs: rs, {"per_sample": "false"})
    assert args == {"per_sample": False}


# -- 5. a per-sample function given as a batch one (and back) says per_sample= ------------------


def test_a_per_sample_function_run_as_batch_hints_per_sample_true():
    def grey(request):
        out = request.image.copy()
        out[request.mask] = 128
        return out

    with pytest.raises(AttributeError, match="per_sample=true"):
        PythonInpainter(grey).inpaint([make_request()])
    assert len(PythonInpainter(grey, per_sample=True).inpaint([make_request()])) == 1


def test_a_batch_function_run_per_sample_hints_per_sample_false():
    def batch(requests):
        return [r.image for r in requests]

    with pytest.raises(TypeError, match="per_sample=false"):
        PythonInpainter(batch, per_sample=True).inpaint([make_request()])


def test_other_attribute_errors_get_no_hint():
    def broken(requests):
        return [r.no_such_field for r in requests]

    def on_list(requests):
        return requests.no_such_method()

    for fn in (broken, on_list):
        with pytest.raises(AttributeError) as info:
            PythonInpainter(fn).inpaint([make_request()])
        assert "per_sample" not in str(info.value)


def test_a_partial_is_keyed_by_its_function_and_arguments():
    """functools.partial keeps its arguments in slots, not in __dict__: they were not seen."""
    import functools

    def fill(request, value):
        return value

    def other(request, value):
        return -value

    assert fingerprint(functools.partial(fill, value=1)) == fingerprint(functools.partial(fill, value=1))
    assert fingerprint(functools.partial(fill, value=1)) != fingerprint(functools.partial(fill, value=0))
    assert fingerprint(functools.partial(fill, value=1)) != fingerprint(functools.partial(other, value=1))
