"""`python -m tuner` is the `tuner` command."""

from tuner.cli import command

if __name__ == "__main__":  # slot processes (spawn) import this module again as __mp_main__
    command()
