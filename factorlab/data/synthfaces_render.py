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
        mouth_curve=1.0, mouth_open_up=0.35, mouth_open_down=0.55, mouth_width=0.18, teeth=1.0, lower_lid=0.55,
        smile_fold=1.0, eye_open=-0.15,
    ),
    "sad": dict(mouth_curve=-0.85, brow_inner=0.9, brow_raise=-0.1, eye_open=-0.2, lid_droop=1.0, lip_press=0.3),
    "surprise": dict(
        brow_raise=1.0, brow_inner=0.15, eye_open=0.55, mouth_open_up=0.55, mouth_open_down=1.1, mouth_width=-0.3,
    ),
    "fear": dict(
        brow_raise=0.6, brow_inner=0.75, eye_open=0.5, mouth_open_up=0.25, mouth_open_down=0.55, mouth_width=0.2,
        mouth_curve=-0.35, teeth=0.6,
    ),
    "disgust": dict(
        brow_raise=-0.45, brow_inner=-0.3, eye_open=-0.3, lower_lid=0.5, nose_wrinkle=1.0, mouth_open_up=0.3,
        mouth_curve=-0.45, teeth=0.7, mouth_asym=0.25, smile_fold=0.6,
    ),
    "anger": dict(
        brow_raise=-0.5, brow_inner=-1.0, eye_open=-0.25, lower_lid=0.4, lip_press=1.0, mouth_width=-0.12,
        mouth_curve=-0.3, nose_wrinkle=0.3,
    ),
    "contempt": dict(mouth_asym=1.0, mouth_curve=0.3, lower_lid=0.15, smile_fold=0.3, lip_press=0.3),
}
EXPRESSION_ACTIONS = np.array([[_DELTA[e].get(a, 0.0) for a in ACTIONS] for e in EXPRESSIONS], dtype=np.float64)
# Per-sample spread of each action at difficulty 1 (noise that makes neighbouring classes overlap).
ACTION_JITTER = np.array([0.25, 0.2, 0.12, 0.2, 0.1, 0.3, 0.3, 0.25, 0.3, 0.15, 0.2, 0.3, 0.3, 0.3])

_SKIN = np.array(
    [[0.98, 0.87, 0.78], [0.95, 0.78, 0.66], [0.87, 0.67, 0.52], [0.72, 0.52, 0.38], [0.52, 0.36, 0.26], [0.36, 0.24, 0.17]]
)
_HAIR = np.array(
    [[0.07, 0.06, 0.05], [0.22, 0.13, 0.07], [0.42, 0.26, 0.13], [0.86, 0.72, 0.42], [0.62, 0.24, 0.09], [0.72, 0.72, 0.7]]
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
    seed: int, index: int, identity: dict[str, float], expression: int, difficulty: float, rng=None
) -> dict[str, float]:
    """Expression intensity/jitter and nuisances of one sample, drawn from (seed, global index)."""
    rng = rng if rng is not None else _seed_rng(seed, 2, index)
    d = float(difficulty)
    p: dict[str, float] = dict(identity)
    p["expression"] = float(expression)
    # Intensity: always full at difficulty 0; down to 0.3 at difficulty 2.
    p["intensity"] = rng.uniform(max(0.3, 1.0 - 0.35 * d), 1.0)
    for name, jitter in zip(ACTIONS, rng.normal(0, 1, len(ACTIONS)) * ACTION_JITTER * d, strict=True):
        p[f"jit_{name}"] = float(jitter)
    u = rng.uniform(-1, 1, 7)
    p.update(
        tx=0.07 * d * u[0], ty=0.02 + 0.07 * d * u[1], scale=0.92 * (1 + 0.1 * d * u[2]),
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
# Rendering


def _cov(d: np.ndarray, inv_aa: np.ndarray) -> np.ndarray:
    """Coverage of the inside (d < 0) of a signed distance, a linear ramp about one pixel wide."""
    return np.clip(0.5 - d * inv_aa, 0.0, 1.0)


def _ellipse(u: np.ndarray, v: np.ndarray, cu, cv, a, b) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse (exact for circles)."""
    du = (u - cu) / a
    dv = (v - cv) / b
    return (np.sqrt(du * du + dv * dv) - 1.0) * np.minimum(a, b)


def _paint(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Composite a flat colour (B,1,1,3) or an image (B,H,W,3) over `img` in place, with coverage `alpha`."""
    img += alpha[..., None] * (colour - img)


def _col(p: Mapping[str, np.ndarray], name: str, scale: float = 1.0) -> np.ndarray:
    return np.stack([p[f"{name}_{c}"] for c in "rgb"], axis=-1)[:, None, None, :].astype(np.float32) * np.float32(scale)


def render_batch(params: Mapping[str, np.ndarray], image_size: int) -> np.ndarray:
    """Render a batch of samples (dict of arrays of length B) -> uint8 (B, S, S, 3)."""
    size = int(image_size)
    f32 = np.float32
    p = {k: np.asarray(params[k], dtype=np.float64).reshape(-1) for k in PARAM_KEYS}
    n = len(p["identity"])

    def col(k: str) -> np.ndarray:  # per-sample scalar, broadcast over (B, H, W)
        return p[k].astype(f32)[:, None, None]

    # Per-sample trigonometry in Python floats: identical whatever the batch.
    cos_r = np.array([math.cos(a) for a in p["rotation"]], dtype=f32)[:, None, None]
    sin_r = np.array([math.sin(a) for a in p["rotation"]], dtype=f32)[:, None, None]
    cos_l = np.array([math.cos(a) for a in p["light_angle"]], dtype=f32)[:, None, None]
    sin_l = np.array([math.sin(a) for a in p["light_angle"]], dtype=f32)[:, None, None]
    cos_b = np.array([math.cos(a) for a in p["bg_angle"]], dtype=f32)[:, None, None]
    sin_b = np.array([math.sin(a) for a in p["bg_angle"]], dtype=f32)[:, None, None]

    grid = ((np.arange(size, dtype=f32) + f32(0.5)) * f32(2.0 / size) - f32(1.0)).astype(f32)
    x = grid[None, None, :]
    y = grid[None, :, None]

    # Image -> face coordinates: undo translation, scale, rotation, then the yaw squeeze.
    scale = col("scale")
    yaw = col("yaw")
    squeeze = f32(1.0) - f32(0.22) * np.abs(yaw)
    qx = (x - col("tx")) / scale
    qy = (y - col("ty")) / scale
    u = (cos_r * qx + sin_r * qy) / squeeze
    v = cos_r * qy - sin_r * qx
    inv_aa = scale * f32(size / 2.0)  # pixels per face unit
    # Yaw parallax: inner features slide towards the turned side, the nose more than the eyes.
    uf = u - f32(0.1) * yaw
    ua = np.abs(uf)

    # Expression actions, per sample: intensity * class delta + jitter (+ identity's resting face).
    expr = p["expression"].astype(np.int64)
    act = EXPRESSION_ACTIONS[expr] * p["intensity"][:, None]
    act = act + np.stack([p[f"jit_{a}"] for a in ACTIONS], axis=1)
    a = {name: act[:, k].astype(f32)[:, None, None] for k, name in enumerate(ACTIONS)}

    fw, fh = col("face_w"), col("face_h")
    skin = _col(p, "skin")
    hair = _col(p, "hair")
    style = p["hair_style"].astype(np.int64)

    # Background: two-colour linear gradient in image coordinates.
    g = np.clip(f32(0.5) + f32(0.5) * (x * cos_b + y * sin_b), 0.0, 1.0)
    bg1, bg2 = _col(p, "bg1"), _col(p, "bg2")
    img = np.broadcast_to(bg1, (n, size, size, 3)) + g[..., None] * (bg2 - bg1)
    img = np.ascontiguousarray(img, dtype=f32)

    # Long and curly hair fall behind the head.
    back = np.isin(style, (1, 4)).astype(f32)[:, None, None]
    back_h = np.where(style == 1, 1.05, 0.75).astype(f32)[:, None, None]
    _paint(img, back * _cov(_ellipse(u, v, 0.0, 0.2, fw + 0.15, back_h), inv_aa), hair * f32(0.85))
    # Shoulders and neck.
    _paint(img, _cov(_ellipse(u, v, 0.0, 1.45, f32(1.0), f32(0.55)), inv_aa), _col(p, "cloth"))
    neck = np.maximum(ua - fw * f32(0.42), np.maximum(f32(0.3) - v, v - f32(1.1)))
    _paint(img, _cov(neck, inv_aa), skin * f32(0.8))
    # Ears, then the face: an ellipse whose lower half narrows towards the chin (`jaw`).
    ear = _ellipse(np.abs(u), v, fw * f32(0.96), f32(0.03), f32(0.1), f32(0.14))
    _paint(img, _cov(ear, inv_aa), skin * f32(0.9))
    lower = np.clip(v / fh, 0.0, 1.0)
    face_w = fw * (f32(1.0) - col("jaw") * lower * lower)
    face = _ellipse(u, v, 0.0, 0.0, face_w, fh)
    face_cov = _cov(face, inv_aa)
    _paint(img, face_cov, skin)

    # Beard: lower face below the nose, same colour family as the hair.
    mouth_y = fh * f32(0.55)
    beard = np.maximum(face - f32(0.01), mouth_y - f32(0.1) + f32(0.6) * ua * ua - v)
    _paint(img, col("beard") * f32(0.85) * _cov(beard, inv_aa), hair * f32(0.8))

    # Hair on top: a cap around the head, over the forehead above the style's hairline.
    cap_w = fw + np.where(style == 4, 0.16, 0.05).astype(f32)[:, None, None]
    cap_h = fh + np.where(style == 4, 0.12, 0.04).astype(f32)[:, None, None]
    cap = _ellipse(u, v, 0.0, -0.06, cap_w, cap_h)
    curls = np.abs(u * f32(7.0) - np.floor(u * f32(7.0)) - f32(0.5)) * f32(0.08)  # scalloped edge for curly hair
    cap = cap + np.where(style == 4, 1.0, 0.0).astype(f32)[:, None, None] * curls
    line_base = np.array([-0.45, -0.45, -0.34, -0.4, -0.42, -2.0])[style].astype(f32)[:, None, None]
    line_u2 = np.array([0.6, 0.75, 0.15, 0.4, 0.45, 0.0])[style].astype(f32)[:, None, None]
    line_u1 = np.where(style == 3, 0.3, 0.0).astype(f32)[:, None, None]
    hairline = line_base + line_u2 * u * u + line_u1 * u
    hair_cov = _cov(cap, inv_aa) * np.maximum(_cov(v - hairline, inv_aa), f32(1.0) - face_cov)
    hair_cov *= (style != 5).astype(f32)[:, None, None]
    _paint(img, hair_cov, hair)

    # Eyes (mirrored through |u|): dark rim, white, iris, pupil; lids cut the eye from above and below.
    ex, ey, es = col("eye_spacing"), col("eye_y"), col("eye_size")
    eye_h = es * f32(0.6) * np.maximum(f32(1.0) + a["eye_open"], f32(0.25))
    eu = ua - ex
    droop = a["lid_droop"] * f32(0.8) * eye_h * np.maximum(eu / es, f32(0.0))  # outer lid lowered
    lid_top = ey - eye_h + droop
    lid_bottom = ey + eye_h * (f32(1.0) - f32(0.55) * np.clip(a["lower_lid"], 0.0, 1.0))
    rim = np.maximum(_ellipse(ua, v, ex, ey, es + f32(0.012), eye_h + f32(0.014)), lid_top - f32(0.016) - v)
    _paint(img, _cov(rim, inv_aa), skin * f32(0.25))
    white = np.maximum(_ellipse(ua, v, ex, ey, es, eye_h), np.maximum(lid_top - v, v - lid_bottom))
    white_cov = _cov(white, inv_aa)
    _paint(img, white_cov, np.array([0.95, 0.95, 0.93], dtype=f32))
    iris_r = es * f32(0.52)
    iris = _ellipse(ua, v, ex, ey, iris_r, iris_r)
    _paint(img, white_cov * _cov(iris, inv_aa), _col(p, "eye"))
    _paint(img, white_cov * _cov(iris + iris_r * f32(0.55), inv_aa), np.array([0.03, 0.03, 0.03], dtype=f32))

    # Brows: thick bands over the eyes; raise lifts them, inner lifts/lowers the ends near the nose.
    bx = eu / (es * f32(1.25))
    brow_v = (
        ey
        - es * f32(0.6)
        - f32(0.07)
        - f32(0.07) * (a["brow_raise"] + col("rest_brow") * f32(0.3))
        - f32(0.035) * (f32(1.0) - bx * bx)
        - f32(0.045) * a["brow_inner"] * (f32(0.5) - f32(0.5) * bx)
    )
    brow = np.maximum(np.abs(v - brow_v) - col("brow_thick") * (f32(1.0) - f32(0.3) * bx), np.abs(bx) - f32(1.0))
    _paint(img, _cov(brow, inv_aa), hair * f32(0.7))

    # Glasses: rings round the eyes, a bridge and the arms.
    ring_r = es * f32(1.55)
    ring = np.abs(_ellipse(ua, v, ex, ey, ring_r, ring_r * f32(0.82))) - f32(0.014)
    bar = np.abs(v - ey + ring_r * f32(0.3)) - f32(0.012)
    bridge = np.maximum(bar, ua - ex + ring_r)
    arms = np.maximum(bar, np.maximum(ex + ring_r - ua, ua - fw))
    glasses = np.minimum(ring, np.minimum(bridge, arms))
    _paint(img, col("glasses") * _cov(glasses, inv_aa), _col(p, "frame"))

    # Nose (with extra parallax): a soft shadow, nostrils, and wrinkles on the bridge.
    nu = u - f32(0.16) * yaw
    nose_s = col("nose_size")
    nose_y = fh * f32(0.2)
    shadow = _ellipse(nu, v, 0.0, nose_y, nose_s * f32(0.075), f32(0.055))
    wrinkle = np.maximum(
        np.abs(np.abs(v - ey - es * f32(0.4)) - f32(0.025)) - f32(0.006), np.abs(nu) - f32(0.06)
    )  # two short lines between the eyes
    shade = np.maximum(_cov(shadow, inv_aa) * f32(0.35), _cov(wrinkle, inv_aa) * np.clip(a["nose_wrinkle"], 0, 1))
    # Nasolabial folds: segments from the nose wings to the mouth corners (cheek raise).
    mw = col("mouth_w") * (f32(1.0) + a["mouth_width"])
    fold_a_u, fold_a_v = nose_s * f32(0.085), nose_y
    fold_b_u, fold_b_v = mw + f32(0.045), mouth_y - f32(0.02)
    du, dv = fold_b_u - fold_a_u, fold_b_v - fold_a_v
    t = np.clip(((ua - fold_a_u) * du + (v - fold_a_v) * dv) / (du * du + dv * dv), 0.0, 1.0)
    fu, fv = ua - fold_a_u - t * du, v - fold_a_v - t * dv
    fold = np.sqrt(fu * fu + fv * fv) - f32(0.007)
    shade = np.maximum(shade, _cov(fold, inv_aa) * np.clip(a["smile_fold"], 0, 1) * f32(0.35))
    _paint(img, shade, skin * f32(0.55))
    nostril = _ellipse(np.abs(nu), v, nose_s * f32(0.038), nose_y + f32(0.03), f32(0.02), f32(0.011))
    _paint(img, _cov(nostril, inv_aa), skin * f32(0.3))

    # Mouth: a centre line c(x) with corner curve and asymmetry; the opening and lips follow it.
    mx = uf / mw
    mx2 = mx * mx
    curve = a["mouth_curve"] + col("rest_curve")
    centre = mouth_y - f32(0.09) * mx2 * (curve + a["mouth_asym"] * mx)
    inside = f32(1.0) - mx2  # 1 at the centre, 0 at the corners
    open_up = f32(0.07) * np.maximum(a["mouth_open_up"], f32(0.0)) * inside
    open_down = f32(0.09) * np.maximum(a["mouth_open_down"], f32(0.0)) * inside
    top, bottom = centre - open_up, centre + open_down
    lip = col("lip_thick") * np.maximum(f32(1.0) - f32(0.6) * a["lip_press"], f32(0.25)) * np.sqrt(
        np.maximum(inside, f32(0.0))
    )
    side = (np.abs(mx) - f32(1.0)) * mw
    lips = np.maximum(np.maximum(top - lip - v, v - bottom - lip * f32(1.2)), side)
    _paint(img, _cov(lips, inv_aa), skin * np.array([0.82, 0.5, 0.5], dtype=f32))
    opening = np.maximum(np.maximum(top - v, v - bottom), side)
    open_cov = _cov(opening, inv_aa)
    _paint(img, open_cov, np.array([0.25, 0.05, 0.06], dtype=f32))
    teeth_h = f32(0.05) * np.clip(a["teeth"], 0.0, 1.0)
    _paint(img, open_cov * _cov(v - top - teeth_h, inv_aa), np.array([0.96, 0.95, 0.9], dtype=f32))
    mouth_line = np.maximum(np.abs(v - centre) - f32(0.006), side)
    _paint(img, _cov(mouth_line, inv_aa) * f32(0.8), skin * f32(0.35))

    # Mole.
    mole = _ellipse(u, v, col("mole_u"), col("mole_v"), f32(0.018), f32(0.018))
    _paint(img, col("mole") * _cov(mole, inv_aa), skin * f32(0.35))

    # Occluding patch (image coordinates), then lighting, colour cast, blur, sensor noise.
    occ = np.maximum(np.abs(x - col("occ_x")) - col("occ_w"), np.abs(y - col("occ_y")) - col("occ_h"))
    _paint(img, col("occluded") * _cov(occ, f32(size / 2.0)), _col(p, "occ"))
    light = col("brightness") * (f32(1.0) + col("light_strength") * (x * cos_l + y * sin_l))
    img *= light[..., None] * _col(p, "cast")
    w = p["blur"].astype(f32)[:, None, None, None]
    if np.any(w > 0):
        padded = np.pad(img, ((0, 0), (1, 1), (0, 0), (0, 0)), mode="edge")
        img = (f32(1.0) - f32(2.0) * w) * img + w * (padded[:, :-2] + padded[:, 2:])
        padded = np.pad(img, ((0, 0), (0, 0), (1, 1), (0, 0)), mode="edge")
        img = (f32(1.0) - f32(2.0) * w) * img + w * (padded[:, :, :-2] + padded[:, :, 2:])
    for i in range(n):
        if p["noise"][i] > 0:
            rng = np.random.Generator(np.random.PCG64(int(p["noise_seed"][i])))
            img[i] += f32(p["noise"][i]) * rng.standard_normal((size, size, 3), dtype=f32)
    return (np.clip(img, 0.0, 1.0) * f32(255.0) + f32(0.5)).astype(np.uint8)


def render(params: Mapping[str, float], image_size: int) -> np.ndarray:
    """Render one sample's parameters -> uint8 (image_size, image_size, 3); a pure function of its inputs."""
    missing = [k for k in PARAM_KEYS if k not in params]
    if missing:
        raise KeyError(f"render: parameters {missing} are missing; see PARAM_KEYS")
    return render_batch({k: np.array([params[k]]) for k in PARAM_KEYS}, image_size)[0]
