"""SynthFaces renderer: face parameters -> RGB image, vectorised over a batch with numpy.

Every shape is a signed distance (approximate, in face units) turned into anti-aliased coverage over
about one pixel, and composited back to front. Only IEEE-exact operations (+ - * / sqrt min max)
touch pixels, and per-sample trigonometry runs in Python's `math`, so an image is byte-identical
whether it is rendered alone or inside any batch.

Face coordinates: u to the right, v down, origin at the face centre; the face is about 1.2 x 1.45.
Parameters are plain floats in a dict (see `PARAM_KEYS`); `sample_params` draws them from a seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from factorlab.errors import DataError

RENDERER_VERSION = 1

EXPRESSIONS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
HAIR_STYLES = ("short", "long", "fringe", "side_part", "curly", "bald")

# Expression -> change of each facial action from neutral, at intensity 1. Close pairs on purpose:
# surprise/fear (raised brows, wide eyes, open mouth), anger/disgust (lowered brows, squint),
# happy/contempt (raised mouth corners; contempt is one-sided and closed).
ACTIONS = (
    "mouth_curve",  # + corners up
    "mouth_asym",  # + right corner higher than the left
    "mouth_open_up",  # upper lip lifted from the centre line
    "mouth_open_down",  # jaw drop
    "mouth_width",  # relative change of mouth width
    "teeth",  # visible upper teeth
    "lip_press",  # thinner, pressed lips
    "brow_raise",  # + brows up
    "brow_inner",  # + inner ends up (sad, fear), - down (anger)
    "eye_open",  # relative change of eye height
    "lower_lid",  # lower lid pushed up (cheek raise, squint)
    "lid_droop",  # outer upper lid lowered (sad)
    "nose_wrinkle",
    "smile_fold",  # nasolabial folds
)
_DELTA = {
    "neutral": {},
    "happy": dict(
        mouth_curve=1.0,
        mouth_open_up=0.35,
        mouth_open_down=0.55,
        mouth_width=0.18,
        teeth=1.0,
        lower_lid=0.55,
        smile_fold=1.0,
        eye_open=-0.15,
    ),
    "sad": dict(mouth_curve=-0.85, brow_inner=0.9, brow_raise=-0.1, eye_open=-0.2, lid_droop=1.0, lip_press=0.3),
    "surprise": dict(
        brow_raise=1.0,
        brow_inner=0.15,
        eye_open=0.55,
        mouth_open_up=0.55,
        mouth_open_down=1.1,
        mouth_width=-0.3,
    ),
    "fear": dict(
        brow_raise=0.6,
        brow_inner=0.75,
        eye_open=0.5,
        mouth_open_up=0.25,
        mouth_open_down=0.55,
        mouth_width=0.2,
        mouth_curve=-0.35,
        teeth=0.6,
    ),
    "disgust": dict(
        brow_raise=-0.45,
        brow_inner=-0.3,
        eye_open=-0.3,
        lower_lid=0.5,
        nose_wrinkle=1.0,
        mouth_open_up=0.3,
        mouth_curve=-0.45,
        teeth=0.7,
        mouth_asym=0.25,
        smile_fold=0.6,
    ),
    "anger": dict(
        brow_raise=-0.5,
        brow_inner=-1.0,
        eye_open=-0.25,
        lower_lid=0.4,
        lip_press=1.0,
        mouth_width=-0.12,
        mouth_curve=-0.3,
        nose_wrinkle=0.3,
    ),
    "contempt": dict(mouth_asym=1.0, mouth_curve=0.3, lower_lid=0.15, smile_fold=0.3, lip_press=0.3),
}
EXPRESSION_ACTIONS = np.array([[_DELTA[e].get(a, 0.0) for a in ACTIONS] for e in EXPRESSIONS], dtype=np.float64)
# Per-sample spread of each action at difficulty 1 (noise that makes neighbouring classes overlap).
ACTION_JITTER = np.array([0.2, 0.15, 0.1, 0.15, 0.08, 0.25, 0.25, 0.2, 0.25, 0.12, 0.15, 0.25, 0.25, 0.25])

_SKIN = np.array(
    [
        [0.98, 0.87, 0.78],
        [0.95, 0.78, 0.66],
        [0.87, 0.67, 0.52],
        [0.72, 0.52, 0.38],
        [0.52, 0.36, 0.26],
        [0.36, 0.24, 0.17],
    ]
)
_HAIR = np.array(
    [
        [0.07, 0.06, 0.05],
        [0.22, 0.13, 0.07],
        [0.42, 0.26, 0.13],
        [0.86, 0.72, 0.42],
        [0.62, 0.24, 0.09],
        [0.72, 0.72, 0.7],
    ]
)
_EYES = np.array([[0.35, 0.2, 0.1], [0.15, 0.1, 0.06], [0.25, 0.45, 0.75], [0.3, 0.55, 0.3], [0.5, 0.55, 0.6]])
_FRAMES = np.array([[0.05, 0.05, 0.05], [0.35, 0.2, 0.1], [0.75, 0.75, 0.8], [0.7, 0.1, 0.1]])

IDENTITY_KEYS = (
    "face_w", "face_h", "jaw", "skin_r", "skin_g", "skin_b", "hair_r", "hair_g", "hair_b", "hair_style",
    "eye_r", "eye_g", "eye_b", "eye_spacing", "eye_size", "eye_y", "brow_thick", "nose_size", "mouth_w",
    "lip_thick", "glasses", "frame_r", "frame_g", "frame_b", "beard", "mole", "mole_u", "mole_v",
    "cloth_r", "cloth_g", "cloth_b", "rest_curve", "rest_brow",
)  # fmt: skip
EXPRESSION_KEYS = ("expression", "intensity") + tuple(f"jit_{a}" for a in ACTIONS)
POSE_KEYS = ("tx", "ty", "scale", "rotation", "yaw")
LIGHT_KEYS = ("light_angle", "light_strength", "brightness", "cast_r", "cast_g", "cast_b")
BACKGROUND_KEYS = ("bg1_r", "bg1_g", "bg1_b", "bg2_r", "bg2_g", "bg2_b", "bg_angle")
OCCLUSION_KEYS = ("occluded", "occ_x", "occ_y", "occ_w", "occ_h", "occ_r", "occ_g", "occ_b")
SENSOR_KEYS = ("blur", "noise", "noise_seed")
NUISANCE_KEYS = POSE_KEYS + LIGHT_KEYS + BACKGROUND_KEYS + OCCLUSION_KEYS + SENSOR_KEYS
PARAM_KEYS = ("identity",) + IDENTITY_KEYS + EXPRESSION_KEYS + NUISANCE_KEYS
# The range of every parameter: `render` clips to it (so any input renders), and tests draw from it.
_COLOUR = (0.0, 1.0)
PARAM_RANGES: dict[str, tuple[float, float]] = {
    "identity": (0, 10**9), "face_w": (0.4, 0.7), "face_h": (0.55, 0.85), "jaw": (0.0, 0.6),
    "hair_style": (0, len(HAIR_STYLES) - 1), "eye_spacing": (0.15, 0.3), "eye_size": (0.06, 0.15),
    "eye_y": (-0.15, 0.05), "brow_thick": (0.01, 0.06), "nose_size": (0.6, 1.5), "mouth_w": (0.12, 0.3),
    "lip_thick": (0.01, 0.05), "glasses": (0, 1), "beard": (0, 1), "mole": (0, 1), "mole_u": (-0.45, 0.45),
    "mole_v": (0.0, 0.35), "rest_curve": (-0.6, 0.6), "rest_brow": (-0.6, 0.6),
    "expression": (0, len(EXPRESSIONS) - 1), "intensity": (0.0, 1.5),
    "tx": (-0.4, 0.4), "ty": (-0.4, 0.4), "scale": (0.5, 1.3), "rotation": (-0.8, 0.8), "yaw": (-1.0, 1.0),
    "light_angle": (-math.pi, math.pi), "light_strength": (0.0, 0.6), "brightness": (0.5, 1.5),
    "cast_r": (0.7, 1.3), "cast_g": (0.7, 1.3), "cast_b": (0.7, 1.3), "bg_angle": (-math.pi, math.pi),
    "occluded": (0, 1), "occ_x": (-1.0, 1.0), "occ_y": (-1.0, 1.0), "occ_w": (0.02, 0.6), "occ_h": (0.02, 0.6),
    "blur": (0.0, 0.33), "noise": (0.0, 0.2), "noise_seed": (0, 2**31 - 1),
}  # fmt: skip
for _name in ("skin", "hair", "eye", "frame", "cloth", "bg1", "bg2", "occ"):
    PARAM_RANGES.update({f"{_name}_{c}": _COLOUR for c in "rgb"})
PARAM_RANGES.update({f"jit_{a}": (-1.5, 1.5) for a in ACTIONS})
INTEGER_PARAMS = ("identity", "hair_style", "expression", "glasses", "beard", "mole", "occluded", "noise_seed")
ACTION_RANGE = (-1.5, 2.0)  # every expression action after intensity and jitter

# Parameter groups that `render_with` can take from another sample.
FACTOR_KEYS = {
    "expression": EXPRESSION_KEYS,
    "identity": ("identity",) + IDENTITY_KEYS,
    "pose": POSE_KEYS,
    "lighting": LIGHT_KEYS,
    "background": BACKGROUND_KEYS,
    "occlusion": OCCLUSION_KEYS,
    "sensor": SENSOR_KEYS,
}


def _seed_rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) for k in key])))


def _palette(rng: np.random.Generator, palette: np.ndarray, spread: float) -> np.ndarray:
    """A colour along a palette's polyline, with a little independent jitter per channel."""
    t = rng.uniform(0, len(palette) - 1)
    i = min(int(t), len(palette) - 2)
    colour = palette[i] + (t - i) * (palette[i + 1] - palette[i])
    return np.clip(colour + rng.normal(0, spread, 3), 0, 1)


def identity_params(seed: int, identity: int) -> dict[str, float]:
    """The fixed traits of one identity, drawn from (seed, identity) only."""
    rng = _seed_rng(seed, 1, identity)
    skin = _palette(rng, _SKIN, 0.02)
    hair = _HAIR[rng.integers(len(_HAIR))] + rng.normal(0, 0.04, 3)
    eye = _EYES[rng.integers(len(_EYES))] + rng.normal(0, 0.03, 3)
    frame = _FRAMES[rng.integers(len(_FRAMES))]
    cloth = rng.uniform(0.1, 0.9, 3)
    p = dict(
        face_w=rng.uniform(0.5, 0.62), face_h=rng.uniform(0.66, 0.78), jaw=rng.uniform(0.0, 0.45),
        hair_style=float(rng.integers(len(HAIR_STYLES))), eye_spacing=rng.uniform(0.2, 0.25),
        eye_size=rng.uniform(0.1, 0.125), eye_y=rng.uniform(-0.09, -0.02), brow_thick=rng.uniform(0.024, 0.042),
        nose_size=rng.uniform(0.8, 1.3), mouth_w=rng.uniform(0.19, 0.25), lip_thick=rng.uniform(0.022, 0.04),
        glasses=float(rng.random() < 0.25), beard=float(rng.random() < 0.2), mole=float(rng.random() < 0.3),
        mole_u=rng.uniform(-0.35, 0.35), mole_v=rng.uniform(0.05, 0.3),
        rest_curve=rng.normal(0, 0.15), rest_brow=rng.normal(0, 0.15),
    )  # fmt: skip
    for name, colour in (("skin", skin), ("hair", hair), ("eye", eye), ("frame", frame), ("cloth", cloth)):
        for c, value in zip("rgb", np.clip(colour, 0, 1), strict=True):
            p[f"{name}_{c}"] = float(value)
    return {k: float(v) for k, v in p.items()}


def sample_params(
    seed: int,
    index: int,
    identity: Mapping[str, float],
    expression: int,
    difficulty: float,
    rng: np.random.Generator | None = None,
) -> dict[str, float]:
    """Expression intensity/jitter and nuisances of one sample, drawn from (seed, global index) or `rng`."""
    rng = rng if rng is not None else _seed_rng(seed, 2, index)
    d = float(difficulty)
    p: dict[str, float] = dict(identity)
    p["expression"] = float(expression)
    # Intensity: always full at difficulty 0; from 0.75 at difficulty 1 and 0.5 at difficulty 2.
    p["intensity"] = rng.uniform(1.0 - 0.25 * d, 1.0)
    for name, jitter in zip(ACTIONS, rng.normal(0, 1, len(ACTIONS)) * ACTION_JITTER * d, strict=True):
        p[f"jit_{name}"] = float(jitter)
    u = rng.uniform(-1, 1, 7)
    p.update(
        tx=0.07 * d * u[0], ty=0.07 + 0.07 * d * u[1], scale=1.08 * (1 + 0.1 * d * u[2]),
        rotation=math.radians(12) * d * u[3], yaw=0.5 * d * u[4], light_angle=math.pi * u[5],
        light_strength=0.3 * d * rng.random(), brightness=1 + 0.12 * d * u[6],
    )  # fmt: skip
    cast = 1 + 0.07 * d * rng.uniform(-1, 1, 3)
    bg1, bg2 = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
    for c in range(3):
        p["cast_" + "rgb"[c]] = float(cast[c])
        p["bg1_" + "rgb"[c]] = float(bg1[c])
        # At low difficulty the background is nearly flat; at high difficulty it is a strong gradient.
        p["bg2_" + "rgb"[c]] = float(bg1[c] + min(1.0, 0.5 * d) * (bg2[c] - bg1[c]))
    p["bg_angle"] = math.pi * rng.uniform(-1, 1)
    occluded = rng.random() < 0.06 * d
    occ_colour = rng.uniform(0.05, 0.95, 3)
    p.update(
        occluded=float(occluded), occ_x=rng.uniform(-0.6, 0.6), occ_y=rng.uniform(-0.6, 0.6),
        occ_w=rng.uniform(0.12, 0.3), occ_h=rng.uniform(0.12, 0.3),
        occ_r=float(occ_colour[0]), occ_g=float(occ_colour[1]), occ_b=float(occ_colour[2]),
        blur=min(0.3, 0.15 * d * rng.random()), noise=0.03 * d * rng.random(), noise_seed=float(rng.integers(2**31)),
    )  # fmt: skip
    return {k: float(v) for k, v in p.items()}


def stack_params(params: list[Mapping[str, float]]) -> dict[str, np.ndarray]:
    """A list of per-sample parameter dicts -> dict of float64 arrays (the batch form)."""
    return {k: np.array([p[k] for p in params], dtype=np.float64) for k in PARAM_KEYS}


# ---------------------------------------------------------------------------------------------------
# Rendering. Images are channel-first float32 planes (3, B, H*W) while drawing: compositing a colour
# over contiguous planes is several times faster than over an interleaved (..., 3) axis.

F32 = np.float32
_TILE_ELEMENTS = 32768  # float32 elements per temporary while drawing (128 KiB: fits L2, reused by malloc)
_NOISE = np.random.Generator(np.random.PCG64(20200101)).standard_normal(1 << 20, dtype=F32)


def _cov(d: np.ndarray, inv_aa: np.ndarray) -> np.ndarray:
    """Coverage of the inside (d < 0) of a signed distance: a linear ramp one pixel wide."""
    c = d * inv_aa
    np.subtract(F32(0.5), c, out=c)
    return np.clip(c, 0.0, 1.0, out=c)


def _ellipse(u: np.ndarray, v: np.ndarray, cu, cv, a, b) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse (exact for circles)."""
    du = u - cu
    du *= F32(1.0) / a
    du *= du
    dv = v - cv
    dv *= F32(1.0) / b
    dv *= dv
    du += dv
    np.sqrt(du, out=du)
    m = np.minimum(a, b)
    du *= m
    du -= m
    return du


def _paint(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Composite a colour (3, B, 1) over `img` (3, B, P) in place, with coverage `alpha` (B, P)."""
    over = colour - img
    over *= alpha
    img += over


def _fixed(r: float, g: float, b: float) -> np.ndarray:
    return np.array([r, g, b], dtype=F32)[:, None, None]


def _prepare(params: Mapping[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Per-sample scalars of a batch at `size` px, as float32 (B, 1) arrays (colours as (3, B, 1))."""
    p = {k: np.clip(np.asarray(params[k], dtype=np.float64).reshape(-1), *PARAM_RANGES[k]) for k in PARAM_KEYS}
    for k in INTEGER_PARAMS:
        p[k] = np.round(p[k])
    s = {k: p[k].astype(F32)[:, None] for k in PARAM_KEYS}
    for name in ("skin", "hair", "eye", "frame", "cloth", "bg1", "bg2", "occ", "cast"):
        s[name] = np.stack([p[f"{name}_{c}"] for c in "rgb"]).astype(F32)[:, :, None]
    # Trigonometry per sample in Python's math: identical whatever the batch.
    for name in ("rotation", "light_angle", "bg_angle"):
        s[f"cos_{name}"] = np.array([math.cos(t) for t in p[name]], dtype=F32)[:, None]
        s[f"sin_{name}"] = np.array([math.sin(t) for t in p[name]], dtype=F32)[:, None]
    # Expression actions: intensity * class delta + per-sample jitter.
    act = EXPRESSION_ACTIONS[p["expression"].astype(np.int64)] * p["intensity"][:, None]
    act = np.clip(act + np.stack([p[f"jit_{a}"] for a in ACTIONS], axis=1), *ACTION_RANGE)
    for k, name in enumerate(ACTIONS):
        s[name] = act[:, k].astype(F32)[:, None]
    style = p["hair_style"].astype(np.int64)
    styles = {
        "back_hair": [0, 1, 0, 0, 1, 0],  # long and curly hair fall behind the head
        "back_height": [0.0, 1.05, 0.0, 0.0, 0.75, 0.0],
        "curly": [0, 0, 0, 0, 1, 0],
        "hairline": [-0.45, -0.45, -0.34, -0.4, -0.42, -9.0],  # forehead top at u = 0
        "hairline_u2": [0.6, 0.75, 0.15, 0.4, 0.45, 0.0],  # how far the sides come down
        "hairline_u1": [0, 0, 0, 0.3, 0, 0],  # side parting
        "has_hair": [1, 1, 1, 1, 1, 0],
    }
    for name, values in styles.items():
        s[name] = np.asarray(values, dtype=F32)[style][:, None]
    # Rows of the two feature bands (see `_band`).
    s["eye_r0"], s["eye_r1"] = _rows(s, *_eye_box(s), size)
    s["mouth_r0"], s["mouth_r1"] = _rows(s, *_mouth_box(s, s["scale"] * F32(size / 2.0)), size)
    return s


def _rows(s: dict[str, np.ndarray], u_half, v0, v1, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the image rows [r0, r1) that hold the face box |u| <= u_half, v0 <= v <= v1."""
    squeeze = F32(1.0) - F32(0.22) * np.abs(s["yaw"])
    ys = [
        s["ty"] + s["scale"] * (s["sin_rotation"] * squeeze * cu + s["cos_rotation"] * cv)
        for cu in (-u_half - F32(0.1), u_half + F32(0.1))  # margin for the yaw parallax
        for cv in (v0, v1)
    ]
    lo, hi = np.minimum.reduce(ys), np.maximum.reduce(ys)
    r0 = np.clip(np.floor((lo + F32(1.0)) * F32(size / 2.0)) - 2, 0, size)
    r1 = np.clip(np.ceil((hi + F32(1.0)) * F32(size / 2.0)) + 2, 0, size)
    return r0, np.maximum(r0, r1)


def _band(r0: np.ndarray, r1: np.ndarray, size: int) -> tuple[slice, np.ndarray]:
    """The flattened pixels of rows [min r0, max r1) and a mask (B, P_band) of each sample's own rows.

    Outside its own rows a sample draws nothing, so an image is the same whichever other samples
    share its batch (and a band never clips a feature: tests compare with full-frame drawing).
    """
    first, last = int(r0.min()), int(r1.max())
    rows = np.repeat(np.arange(first, last, dtype=F32), size)[None, :]
    return slice(first * size, last * size), (rows >= r0) & (rows < r1)


def _eye_box(s: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u_half, v_top, v_bottom) bounding the brows, eyes, glasses and nose wrinkles; see `_draw_eyes`."""
    ey, es, inner, thick = s["eye_y"], s["eye_size"], s["brow_inner"], s["brow_thick"] * F32(1.3)
    brow = ey - es * F32(0.6) - F32(0.07) - F32(0.07) * (s["brow_raise"] + s["rest_brow"] * F32(0.3))
    brow_top = brow - F32(0.035) - F32(0.045) * np.maximum(inner, F32(0.0)) - thick
    brow_bottom = brow + F32(0.045) * np.maximum(-inner, F32(0.0)) + thick
    eye = es * F32(0.6) * np.maximum(F32(1.0) + s["eye_open"], F32(0.25)) + F32(0.016)
    ring = s["glasses"] * (es * F32(1.55 * 0.82) + F32(0.016))
    top = np.minimum(brow_top, ey - np.maximum(eye, ring))
    bottom = np.maximum(np.maximum(brow_bottom, ey + np.maximum(eye, ring)), ey + es * F32(0.4) + F32(0.035))
    return np.maximum(s["face_w"], s["eye_spacing"] + es * F32(1.6)), top - F32(0.02), bottom + F32(0.02)


def _mouth_box(s: dict[str, np.ndarray], inv_aa: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u_half, v_top, v_bottom) bounding the nose, folds, mole and mouth; see `_draw_nose_mouth`."""
    fh = s["face_h"]
    nose_y, mouth_y = fh * F32(0.2), fh * F32(0.55)
    mw = s["mouth_w"] * np.maximum(F32(1.0) + s["mouth_width"], F32(0.3))
    reach = F32(1.0) + F32(0.5) / (mw * inv_aa)  # |mx| where the anti-aliased mouth corner ends
    bend = F32(0.09) * reach * reach * (np.abs(s["mouth_curve"] + s["rest_curve"]) + reach * np.abs(s["mouth_asym"]))
    lip = s["lip_thick"] * np.maximum(F32(1.0) - F32(0.6) * s["lip_press"], F32(0.25)) * F32(1.2)
    mouth_top = mouth_y - bend - F32(0.07) * np.maximum(s["mouth_open_up"], F32(0.0)) - lip
    mouth_bottom = mouth_y + bend + F32(0.09) * np.maximum(s["mouth_open_down"], F32(0.0)) + lip
    mole = s["mole"] > 0
    top = np.minimum(nose_y - F32(0.06), np.where(mole, s["mole_v"] - F32(0.02), F32(9.0)))
    top = np.minimum(top, mouth_top)
    bottom = np.maximum(mouth_bottom, np.where(mole, s["mole_v"] + F32(0.02), F32(-9.0)))
    u_half = np.maximum(mw * reach + F32(0.06), np.where(mole, np.abs(s["mole_u"]) + F32(0.02), F32(0.0)))
    return np.maximum(u_half, F32(0.15)), top - F32(0.02), bottom + F32(0.02)


def _draw_eyes(s: dict[str, np.ndarray], img: np.ndarray, ua: np.ndarray, v: np.ndarray, inv_aa: np.ndarray) -> None:
    """Eyes, brows and glasses, painted in place into `img` (a band of rows)."""
    ex, ey, es, fw, skin, hair = s["eye_spacing"], s["eye_y"], s["eye_size"], s["face_w"], s["skin"], s["hair"]
    # Wrinkles on the nose bridge (disgust): two short lines between the eyes.
    wrinkle = np.maximum(np.abs(np.abs(v - ey - es * F32(0.4)) - F32(0.025)) - F32(0.006), ua - F32(0.06))
    _paint(img, _cov(wrinkle, inv_aa) * np.clip(s["nose_wrinkle"], 0, 1), skin * F32(0.55))
    # Eyes (mirrored through |u|): dark rim, white, iris; lids cut the eye from above and below.
    eye_h = es * F32(0.6) * np.maximum(F32(1.0) + s["eye_open"], F32(0.25))
    eu = ua - ex
    lid_top = np.maximum(eu, F32(0.0)) * (s["lid_droop"] * F32(0.8) * eye_h / es)  # outer upper lid lowered
    lid_top += ey - eye_h
    lid_bottom = ey + eye_h * (F32(1.0) - F32(0.55) * np.clip(s["lower_lid"], 0.0, 1.0))
    rim = np.maximum(_ellipse(ua, v, ex, ey, es + F32(0.012), eye_h + F32(0.014)), lid_top - F32(0.016) - v)
    _paint(img, _cov(rim, inv_aa), skin * F32(0.25))
    white = np.maximum(_ellipse(ua, v, ex, ey, es, eye_h), np.maximum(lid_top - v, v - lid_bottom))
    white_cov = _cov(white, inv_aa)
    _paint(img, white_cov, _fixed(0.95, 0.95, 0.93))
    iris_r = es * F32(0.52)
    iris = _ellipse(ua, v, ex, ey, iris_r, iris_r)
    _paint(img, white_cov * _cov(iris, inv_aa), s["eye"])
    _paint(img, white_cov * _cov(iris + iris_r * F32(0.55), inv_aa), skin * F32(0.2))  # pupils

    # Brows: thick bands over the eyes; raise lifts them, inner lifts/lowers the ends near the nose.
    bx = eu * (F32(0.8) / es)
    brow_v = ey - es * F32(0.6) - F32(0.07) - F32(0.07) * (s["brow_raise"] + s["rest_brow"] * F32(0.3))
    brow_v = brow_v - F32(0.035) * (F32(1.0) - bx * bx) - (F32(0.0225) * s["brow_inner"]) * (F32(1.0) - bx)
    brow = np.abs(v - brow_v) - s["brow_thick"] * (F32(1.0) - F32(0.3) * bx)
    brow = np.maximum(brow, np.abs(bx) - F32(1.0))
    _paint(img, _cov(brow, inv_aa), hair * F32(0.7))

    # Glasses: rings round the eyes, a bridge and the arms.
    if s["glasses"].any():
        ring_r = es * F32(1.55)
        ring = np.abs(_ellipse(ua, v, ex, ey, ring_r, ring_r * F32(0.82))) - F32(0.014)
        bar = np.abs(v - ey + ring_r * F32(0.3)) - F32(0.012)
        bridge_and_arms = np.maximum(bar, np.maximum(ring_r - np.abs(eu), ua - fw))
        _paint(img, s["glasses"] * _cov(np.minimum(ring, bridge_and_arms), inv_aa), s["frame"])


def _draw_nose_mouth(
    s: dict[str, np.ndarray], img: np.ndarray, u: np.ndarray, v: np.ndarray, inv_aa: np.ndarray
) -> None:
    """Nose, nasolabial folds, mouth and mole, painted in place into `img` (a band of rows)."""
    fh, yaw, skin = s["face_h"], s["yaw"], s["skin"]
    mouth_y = fh * F32(0.55)
    uf = u - F32(0.1) * yaw
    ua = np.abs(uf)
    # Nose (with more parallax): a soft shadow, nasolabial folds, nostrils.
    nu = u - F32(0.16) * yaw
    nose_s, nose_y = s["nose_size"], fh * F32(0.2)
    shade = _cov(_ellipse(nu, v, 0.0, nose_y, nose_s * F32(0.075), F32(0.055)), inv_aa)
    shade *= F32(0.35)
    mw = s["mouth_w"] * np.maximum(F32(1.0) + s["mouth_width"], F32(0.3))
    fa_u, fa_v = nose_s * F32(0.085), nose_y  # fold from the nose wing ...
    du, dv = mw + F32(0.045) - fa_u, mouth_y - F32(0.02) - fa_v  # ... to beside the mouth corner
    pu, pv = ua - fa_u, v - fa_v
    t = np.clip(pu * (du / (du * du + dv * dv)) + pv * (dv / (du * du + dv * dv)), 0.0, 1.0)
    pu -= t * du
    pv -= t * dv
    fold = np.sqrt(pu * pu + pv * pv) - F32(0.007)
    shade = np.maximum(shade, _cov(fold, inv_aa) * (np.clip(s["smile_fold"], 0, 1) * F32(0.35)))
    _paint(img, shade, skin * F32(0.55))
    nostril = _ellipse(np.abs(nu), v, nose_s * F32(0.038), nose_y + F32(0.03), F32(0.02), F32(0.011))
    dark = _cov(nostril, inv_aa)
    if s["mole"].any():
        mole = _ellipse(u, v, s["mole_u"], s["mole_v"], F32(0.018), F32(0.018))
        dark = np.maximum(dark, s["mole"] * _cov(mole, inv_aa))

    # Mouth: a centre line with corner curve and asymmetry; the opening and the lips follow it.
    mx = uf / mw
    mx2 = mx * mx
    centre = mx2 * (s["mouth_curve"] + s["rest_curve"] + s["mouth_asym"] * mx)
    centre *= F32(-0.09)
    centre += mouth_y
    inside = np.maximum(F32(1.0) - mx2, F32(0.0))  # 1 at the centre, 0 at the corners
    top = centre - (F32(0.07) * np.maximum(s["mouth_open_up"], F32(0.0))) * inside
    bottom = centre + (F32(0.09) * np.maximum(s["mouth_open_down"], F32(0.0))) * inside
    lip = np.sqrt(inside)
    lip *= s["lip_thick"] * np.maximum(F32(1.0) - F32(0.6) * s["lip_press"], F32(0.25))
    side = (np.abs(mx) - F32(1.0)) * mw
    lips = np.maximum(np.maximum(top - lip - v, v - bottom - lip * F32(1.2)), side)
    _paint(img, _cov(lips, inv_aa), skin * _fixed(0.82, 0.5, 0.5))
    open_cov = _cov(np.maximum(np.maximum(top - v, v - bottom), side), inv_aa)
    _paint(img, open_cov, _fixed(0.25, 0.05, 0.06))
    teeth = _cov(v - top - F32(0.05) * np.clip(s["teeth"], 0.0, 1.0), inv_aa)
    _paint(img, open_cov * teeth, _fixed(0.96, 0.95, 0.9))
    mouth_line = np.maximum(np.abs(v - centre) - F32(0.006), side)
    dark = np.maximum(dark, _cov(mouth_line, inv_aa) * F32(0.8))
    _paint(img, dark, skin * F32(0.2))


def _draw(s: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, size: int) -> np.ndarray:
    """Draw a few images at pixel centres x, y (1, P), before blur and noise -> float32 (3, B, P)."""
    # Image -> face coordinates: undo translation, scale, rotation, then the yaw squeeze.
    scale, yaw, cos_r, sin_r = s["scale"], s["yaw"], s["cos_rotation"], s["sin_rotation"]
    qx, qy = (x - s["tx"]) / scale, (y - s["ty"]) / scale
    u = cos_r * qx + sin_r * qy
    u /= F32(1.0) - F32(0.22) * np.abs(yaw)
    v = cos_r * qy - sin_r * qx
    inv_aa = scale * F32(size / 2.0)  # pixels per face unit
    uf = u - F32(0.1) * yaw  # yaw parallax: inner features slide towards the turned side
    ua = np.abs(uf)
    fw, fh, skin, hair = s["face_w"], s["face_h"], s["skin"], s["hair"]

    # Background: two-colour linear gradient in image coordinates.
    g = x * s["cos_bg_angle"] + y * s["sin_bg_angle"]
    g = np.clip(F32(0.5) + F32(0.5) * g, 0.0, 1.0)
    img = s["bg1"] + g * (s["bg2"] - s["bg1"])

    # Hair behind the head, shoulders, then neck and ears in one skin shade.
    if s["back_hair"].any():
        back = _ellipse(u, v, 0.0, 0.2, fw + F32(0.15), s["back_height"] + F32(1e-3))
        _paint(img, s["back_hair"] * _cov(back, inv_aa), hair * F32(0.85))
    _paint(img, _cov(_ellipse(u, v, 0.0, 1.45, F32(1.0), F32(0.55)), inv_aa), s["cloth"])
    neck = np.maximum(ua - fw * F32(0.42), np.maximum(F32(0.3) - v, v - F32(1.1)))
    ear = _ellipse(np.abs(u), v, fw * F32(0.96), F32(0.03), F32(0.1), F32(0.14))
    _paint(img, _cov(np.minimum(neck, ear), inv_aa), skin * F32(0.85))
    # The face: an ellipse whose lower half narrows towards the chin (`jaw`).
    lower = np.clip(v / fh, 0.0, 1.0)
    lower *= lower
    face = _ellipse(u, v, 0.0, 0.0, fw * (F32(1.0) - s["jaw"] * lower), fh)
    face_cov = _cov(face, inv_aa)
    _paint(img, face_cov, skin)

    # Beard: lower face below the nose, in the hair's colour family.
    mouth_y = fh * F32(0.55)
    if s["beard"].any():
        beard = np.maximum(face - F32(0.01), mouth_y - F32(0.1) + F32(0.6) * ua * ua - v)
        _paint(img, s["beard"] * F32(0.85) * _cov(beard, inv_aa), hair * F32(0.8))

    # Hair on top: a cap around the head, over the forehead above the style's hairline.
    curly = s["curly"]
    cap = _ellipse(u, v, 0.0, -0.06, fw + F32(0.05) + F32(0.11) * curly, fh + F32(0.04) + F32(0.08) * curly)
    if s["curly"].any():  # scalloped edge
        u7 = u * F32(7.0)
        cap += curly * np.abs(u7 - np.floor(u7) - F32(0.5)) * F32(0.08)
    hairline = s["hairline"] + u * (s["hairline_u2"] * u + s["hairline_u1"])
    hair_cov = np.maximum(_cov(v - hairline, inv_aa), F32(1.0) - face_cov)
    hair_cov *= _cov(cap, inv_aa)
    hair_cov *= s["has_hair"]
    _paint(img, hair_cov, hair)

    # Features only where they can be: two bands of rows, drawn in place through views.
    # Outside a sample's own rows v is set far away, where every shape has zero coverage.
    far = F32(1000.0)
    rows, inside = _band(s["eye_r0"], s["eye_r1"], size)
    _draw_eyes(s, img[:, :, rows], ua[:, rows], np.where(inside, v[:, rows], far), inv_aa)
    rows, inside = _band(s["mouth_r0"], s["mouth_r1"], size)
    _draw_nose_mouth(s, img[:, :, rows], u[:, rows], np.where(inside, v[:, rows], far), inv_aa)

    # Occluding patch (image coordinates), then lighting and colour cast.
    if s["occluded"].any():
        occ = np.maximum(np.abs(x - s["occ_x"]) - s["occ_w"], np.abs(y - s["occ_y"]) - s["occ_h"])
        _paint(img, s["occluded"] * _cov(occ, F32(size / 2.0)), s["occ"])
    light = x * s["cos_light_angle"] + y * s["sin_light_angle"]
    light = s["brightness"] * (F32(1.0) + s["light_strength"] * light)
    img *= light
    img *= s["cast"]
    return img


def render_batch(params: Mapping[str, np.ndarray], image_size: int) -> np.ndarray:
    """Render a batch of samples (dict of arrays of length B) -> uint8 (B, S, S, 3)."""
    size = int(image_size)
    s = _prepare(params, size)
    n = len(s["scale"])
    grid = (np.arange(size, dtype=F32) + F32(0.5)) * F32(2.0 / size) - F32(1.0)
    x = np.tile(grid, size)[None, :]  # pixels flattened: long inner loops against per-sample scalars
    y = np.repeat(grid, size)[None, :]
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    # A few images at a time: small temporaries stay in cache and are recycled by the allocator,
    # which makes drawing several times faster than whole-batch arrays.
    group = max(1, _TILE_ELEMENTS // (size * size))
    for g0 in range(0, n, group):
        sg = {k: v[:, g0 : g0 + group] if v.ndim == 3 else v[g0 : g0 + group] for k, v in s.items()}
        img = _draw(sg, x, y, size).reshape(3, -1, size, size)
        blur = sg["blur"][:, :, None]
        if blur.any():  # separable 3-tap blur with per-sample weight
            for axis in (2, 3):
                edge = np.concatenate([img.take([0], axis), img, img.take([size - 1], axis)], axis=axis)
                lo, hi = (edge[:, :, :-2], edge[:, :, 2:]) if axis == 2 else (edge[..., :-2], edge[..., 2:])
                img = img + blur * (lo + hi - F32(2.0) * img)
        for i in range(img.shape[1]):  # sensor noise: a slice of a fixed noise field, chosen by the sample's seed
            sigma = sg["noise"][i, 0]
            if sigma > 0:
                start = int(sg["noise_seed"][i, 0]) % (len(_NOISE) - 3 * size * size)
                img[:, i] += sigma * _NOISE[start : start + 3 * size * size].reshape(3, size, size)
        img *= F32(255.0)
        img += F32(0.5)
        np.clip(img, 0.0, 255.0, out=img)
        out[g0 : g0 + group] = img.transpose(1, 2, 3, 0)
    return out


def render(params: Mapping[str, float], image_size: int) -> np.ndarray:
    """Render one sample's parameters -> uint8 (image_size, image_size, 3); a pure function of its inputs."""
    missing = [k for k in PARAM_KEYS if k not in params]
    if missing:
        raise DataError(f"synthfaces render: parameters {missing} are missing; every key of PARAM_KEYS is needed")
    return render_batch({k: np.array([params[k]]) for k in PARAM_KEYS}, image_size)[0]
