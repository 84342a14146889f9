"""The one place eightbit.torch imports PyTorch: a clear ImportError when it is absent (eightbit
itself runs without it; ``pip install "eightbit[torch]"`` adds it)."""
try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised in an environment without torch
    raise ImportError("eightbit.torch needs PyTorch: pip install \"eightbit[torch]\" "
                      "(the CPU build: pip install torch --index-url https://download.pytorch.org/whl/cpu)") from e
