"""Prompt templates, versioned: the manifest records PROMPT_TEMPLATE_VERSION."""

from __future__ import annotations

from soebench.manifest.schema import PROMPT_KEYS

PROMPT_TEMPLATE_VERSION = "1"

TEMPLATES: dict[str, str] = {
    "label": "{category}",
    "small_label": "a small {category}",
    "color_label": "{color} {category}",
    "small_color_label": "a small {color} {category}",
}
assert tuple(TEMPLATES) == PROMPT_KEYS


def names_colour(prompt_key: str) -> bool:
    """Whether the prompt of this key asks for a colour (so a wrong colour is a failure)."""
    return "{color}" in TEMPLATES[prompt_key]


def normalise_label(category: str) -> str:
    """Class names as prompts read them: OpenImages 'Traffic light' -> 'traffic light'."""
    return " ".join(category.replace("_", " ").split()).lower()


def make_prompts(category: str, color: str | None) -> dict[str, str]:
    """All prompt variants of one object; without a colour word the colour prompts fall back to
    the plain ones (so every key is always filled)."""
    name = normalise_label(category)
    out = {}
    for key, template in TEMPLATES.items():
        if "{color}" in template and not color:
            template = TEMPLATES[key.replace("color_", "")]
        out[key] = template.format(category=name, color=color or "")
    return out
