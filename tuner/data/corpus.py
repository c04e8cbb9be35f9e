"""Character-level text for language models: bytes of a UTF-8 file.

By default the text is an excerpt of Shakespeare's plays (public domain, the opening of
the widely used "tiny shakespeare" set) that ships in ``tuner/data/corpus/``. Tokens
are bytes, so any file works and the vocabulary is always 256.

An epoch visits every non-overlapping window of ``block_size`` characters of the
training text once (in a new order each epoch); the model predicts each next character.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from tuner.data.in_memory import InMemoryDataModule, check_fraction

BUNDLED_CORPUS = Path(__file__).with_name("corpus") / "shakespeare.txt"


def _windows(tokens: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-character targets for non-overlapping windows."""
    n = (len(tokens) - 1) // block_size
    if n < 1:
        raise ValueError(f"the text ({len(tokens)} characters) is shorter than one "
                         f"window of data.block_size={block_size} + 1")
    x = tokens[: n * block_size].view(n, block_size)
    y = tokens[1: n * block_size + 1].view(n, block_size)
    return x, y


@lru_cache(maxsize=4)
def _split(path: str, block_size: int, val_fraction: float):
    data = Path(path).read_bytes()
    tokens = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()
    n_train = int(len(tokens) * (1 - val_fraction))
    return _windows(tokens[:n_train], block_size), _windows(tokens[n_train:], block_size)


class CharCorpusDataModule(InMemoryDataModule):
    def __init__(self, path: str | None = None, block_size: int = 64, batch_size: int = 32,
                 val_fraction: float = 0.1, vocab_size: int = 256):
        super().__init__(batch_size)
        check_fraction("data.val_fraction", val_fraction)
        if vocab_size != 256:
            raise ValueError(f"data.vocab_size must be 256 (byte tokens), got {vocab_size}")
        source = Path(path).expanduser() if path else BUNDLED_CORPUS
        if not source.is_file():
            raise FileNotFoundError(f"data.path={path}: no such file; give a UTF-8 text file "
                                    "or null for the bundled corpus")
        if block_size < 1:
            raise ValueError(f"data.block_size must be >= 1, got {block_size}")
        self.source = source.resolve()
        self.block_size, self.val_fraction, self.vocab_size = block_size, val_fraction, vocab_size

    def load(self):
        return _split(str(self.source), self.block_size, self.val_fraction)
