from soediff.cli import run

run()
