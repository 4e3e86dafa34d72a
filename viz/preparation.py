"""What the training data does to the inputs before the network sees them (`train.data`: resize,
normalize, standardize), in words for the forward picture: the network's first op reads prepared data,
and a picture that hid the preparation would show a different computation from the one trained."""

from __future__ import annotations


def preparation_steps(train: dict | None) -> list[str]:
    """One line per step the trainer applies to the inputs, in order; [] when there is none."""
    data = (train or {}).get("data")
    if not isinstance(data, dict):
        return []
    transform = data.get("transform") or {}
    steps = []
    resize = transform.get("resize")
    if resize is not None:
        hw = [resize, resize] if isinstance(resize, int) else list(resize)
        steps.append(f"resize to {' x '.join(str(d) for d in hw)}")
    normalize = transform.get("normalize")
    if isinstance(normalize, (list, tuple)) and len(normalize) == 2:
        steps.append(f"normalise: (x - {normalize[0]}) / {normalize[1]}")
    elif normalize:
        steps.append("normalise: (x - mean) / std, one mean and std of the training split")
    if data.get("standardize"):
        steps.append("standardise: (x - mean) / std per feature, statistics of the training split")
    return steps
