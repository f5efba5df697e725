"""Network input preparation (numpy), identical at training and run time."""
from __future__ import annotations

import numpy as np

from .curves import overexposure_mask, to_linear

MAX_REL = 64.0  # the largest exposure-relative value a reference can bring (6 stops)
Y_MAX = 65504.0  # largest finite half: results and an RGBH output must never overflow to Inf


def net_input(code: np.ndarray, transfer: str = "gamma2.2", ratio: float = 1.0, threshold: float = 0.95,
              out: np.ndarray | None = None) -> np.ndarray:
    """HxWx3 display-referred code values -> 4xHxW float32 network input (into `out` when given: a
    4xHxW float32 array or view, e.g. the inside of a padded buffer).

    Channels: (f^-1(L) * ratio) ** (1/2.2) (exposure-aligned, may exceed 1 for references) and the
    frame's own soft over-exposure mask (where this frame itself carries no information).
    """
    if out is None:
        out = np.empty((4,) + code.shape[:2], np.float32)   # written plane by plane: no HxWx3 temporaries
    # pow is monotone, so min(lin * r, MAX_REL) ** (1/2.2) = min(lin ** (1/2.2) * r ** (1/2.2), MAX_REL ** (1/2.2)),
    # and for gamma 2.2 lin ** (1/2.2) is the clipped code value itself: no pow at all (1080p: 55 -> 10 ms)
    scale = ratio_scale(ratio)
    top = np.float32(MAX_REL ** (1 / 2.2))
    for c in range(3):
        if transfer == "gamma2.2":
            np.clip(code[..., c], 0.0, 1.0, out=out[c])
        else:
            out[c] = np.power(to_linear(code[..., c], transfer), 1 / 2.2, dtype=np.float32)
        if scale != 1:
            np.multiply(out[c], scale, out=out[c])
            np.minimum(out[c], top, out=out[c])
    out[3] = overexposure_mask(code, threshold)[..., 0]
    return out


def padded_size(h: int, w: int, modulus: int) -> tuple[int, int]:
    """(h, w) rounded up to multiples of modulus."""
    return h + (-h) % modulus, w + (-w) % modulus


def fill_padded(dst: np.ndarray, h: int, w: int) -> np.ndarray:
    """Replicate the edges of dst[..., :h, :w] into the rest of dst (...xHpxWp): edge padding for
    buffers filled in place (the engine writes network inputs straight into them)."""
    if dst.shape[-1] > w:
        dst[..., :h, w:] = dst[..., :h, w - 1: w]
    if dst.shape[-2] > h:
        dst[..., h:, :] = dst[..., h - 1: h, :]
    return dst


def pad_to(x: np.ndarray, modulus: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad ...xHxW by edge replication up to multiples of modulus (x itself when already there)."""
    h, w = x.shape[-2:]
    hp, wp = padded_size(h, w, modulus)
    if (hp, wp) == (h, w):
        return x, (h, w)
    out = np.empty(x.shape[:-2] + (hp, wp), x.dtype)
    out[..., :h, :w] = x
    return fill_padded(out, h, w), (h, w)


def merge_prep_graph(keys: int, evidence: bool, y_max: float):
    """An ONNX graph that makes the merge's key inputs on the device (engine.merge.DeviceMerge, CUDA) from
    each key's network input at ratio 1 (k{j}, 1x4xHxW), its result Y (y{j}, 1x3xHxW) and, with the
    evidence gate, its evidence (ev{j}): keys = [min(k_j[:3] * s_j, MAX_REL ** (1/2.2)), k_j[3]] and
    ys = min(y_j * e_j, y_max) (Y_MAX), concatenated over j, as net_input(..., ratio=e_j) and engine.merge.HostMerge
    compute them on the host (s_j = e_j ** (1/2.2) in float32). Why: a key's arrays are the same for
    every frame that merges it (~30 frames), so on CUDA they go to the device once, and only the
    exposure ratios change per frame."""
    from onnx import TensorProto, helper, numpy_helper
    f = TensorProto.FLOAT
    inits = [numpy_helper.from_array(np.array(v, dtype), n) for n, v, dtype in (
        ("top", [MAX_REL ** (1 / 2.2)], np.float32), ("ymax", [y_max], np.float32),
        ("c0", [0], np.int64), ("c3", [3], np.int64), ("c4", [4], np.int64), ("ax", [1], np.int64))]
    ins, nodes, outs = [], [], []
    kk, yy, ee = [], [], []
    for j in range(keys):
        ins += [helper.make_tensor_value_info(f"k{j}", f, [1, 4, "h", "w"]),
                helper.make_tensor_value_info(f"y{j}", f, [1, 3, "h", "w"]),
                helper.make_tensor_value_info(f"s{j}", f, [1]), helper.make_tensor_value_info(f"e{j}", f, [1])]
        nodes += [helper.make_node("Slice", [f"k{j}", "c0", "c3", "ax"], [f"kc{j}"]),
                  helper.make_node("Slice", [f"k{j}", "c3", "c4", "ax"], [f"km{j}"]),
                  helper.make_node("Mul", [f"kc{j}", f"s{j}"], [f"ks{j}"]),
                  helper.make_node("Min", [f"ks{j}", "top"], [f"kt{j}"]),
                  helper.make_node("Concat", [f"kt{j}", f"km{j}"], [f"ko{j}"], axis=1),
                  helper.make_node("Mul", [f"y{j}", f"e{j}"], [f"ye{j}"]),
                  helper.make_node("Min", [f"ye{j}", "ymax"], [f"yo{j}"])]
        kk.append(f"ko{j}")
        yy.append(f"yo{j}")
        if evidence:
            ins.append(helper.make_tensor_value_info(f"ev{j}", f, [1, 1, "h", "w"]))
            ee.append(f"ev{j}")
    nodes += [helper.make_node("Concat", kk, ["keys"], axis=1), helper.make_node("Concat", yy, ["ys"], axis=1)]
    outs += [helper.make_tensor_value_info("keys", f, [1, 4 * keys, "h", "w"]),
             helper.make_tensor_value_info("ys", f, [1, 3 * keys, "h", "w"])]
    if evidence:
        nodes.append(helper.make_node("Concat", ee, ["evidence"], axis=1))
        outs.append(helper.make_tensor_value_info("evidence", f, [1, keys, "h", "w"]))
    return helper.make_graph(nodes, "merge_prep", ins, outs, inits)


def ratio_scale(ratio: float) -> np.float32:
    """What net_input multiplies the colour channels by for an exposure ratio (ratio ** (1/2.2))."""
    return np.float32(np.float64(ratio) ** (1 / 2.2))
