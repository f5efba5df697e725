"""Training-side code (torch): networks, data synthesis, losses, metrics, export."""


def pick_device(name: str = "auto"):
    """'auto' -> CUDA when torch sees a GPU, else the CPU; otherwise torch.device(name)."""
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def to_device(obj, dev):
    """Tensors in (nested) dicts and lists moved to dev."""
    if isinstance(obj, dict):
        return {k: to_device(v, dev) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_device(v, dev) for v in obj]
    return obj.to(dev, non_blocking=True) if hasattr(obj, "to") else obj
