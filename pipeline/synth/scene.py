"""Camera paths and procedural backgrounds for the synthetic corpus.

The scene camera is a pinhole looking horizontally (x right, y down, z away from the
camera) at ``height`` metres above a flat ground, with a moving focal length (zoom), a
moving principal point (hand-held shake and pan, i.e. a shifted sensor, which keeps the
horizon horizontal) and a small roll about the optical axis. Backgrounds are computed per
pixel by intersecting each pixel's ray with the ground plane and, indoors, a back wall, so
they move consistently with zoom, shake and roll. People are drawn with the weak-perspective
camera of their root depth (``pipeline.synth.corpus``), which stands on the same ground.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

__all__ = ["Backdrop", "CameraPath", "box_mesh", "sample_backdrop", "sample_camera"]


@dataclass(frozen=True)
class CameraPath:
    """Per-frame intrinsics of the scene camera.

    Attributes:
        focal: (T,) focal length, pixels.
        principal: (T, 2) principal point (cx, cy), pixels.
        roll: (T,) rotation about the optical axis, radians (image rotates by -roll).
        height: camera height above the ground, metres.
        shake: "tripod", "handheld" or "shaky".
    """

    focal: np.ndarray
    principal: np.ndarray
    roll: np.ndarray
    height: float
    shake: str


def _smooth_signal(rng: np.random.Generator, t: np.ndarray, freqs: tuple[float, float], n: int = 4) -> np.ndarray:
    out = np.zeros_like(t)
    for _ in range(n):
        out += np.sin(2 * np.pi * rng.uniform(*freqs) * t + rng.uniform(0, 2 * np.pi)) * rng.uniform(0.5, 1.0)
    return out / n


def sample_camera(rng: np.random.Generator, times: np.ndarray, width: int, height: int) -> CameraPath:
    """A random camera path: base focal length, optional zoom, shake, pan and roll.

    Args:
        rng: random generator.
        times: (T,) frame times, seconds.
        width, height: image size, pixels.
    """
    t = np.asarray(times, dtype=np.float64)
    duration = max(float(t[-1] - t[0]), 1e-6)
    f0 = width * rng.uniform(0.9, 1.3)
    if rng.random() < 0.5:
        start = rng.uniform(0.0, 0.5) * duration
        length = rng.uniform(0.3, 0.6) * duration
        amount = rng.choice([-1.0, 1.0]) * rng.uniform(0.12, 0.3)
        x = np.clip((t - t[0] - start) / length, 0.0, 1.0)
        zoom = amount * x * x * (3 - 2 * x)
    else:
        zoom = 0.03 * _smooth_signal(rng, t, (0.05, 0.2))
    focal = f0 * np.exp(zoom)
    shake = str(rng.choice(["tripod", "handheld", "handheld", "shaky"]))
    amp = {"tripod": 0.002, "handheld": 0.012, "shaky": 0.03}[shake] * width
    cx = width / 2 + amp * _smooth_signal(rng, t, (0.2, 1.5)) + 0.15 * amp * _smooth_signal(rng, t, (3.0, 7.0))
    cy0 = height * rng.uniform(0.22, 0.36)
    cy = cy0 + 0.7 * amp * _smooth_signal(rng, t, (0.2, 1.5)) + 0.15 * amp * _smooth_signal(rng, t, (3.0, 7.0))
    if rng.random() < 0.3:  # a slow pan
        cx = cx + rng.uniform(-0.12, 0.12) * width * (t - t[0]) / duration
    roll_amp = {"tripod": 0.1, "handheld": 0.8, "shaky": 2.0}[shake] * np.pi / 180
    roll = roll_amp * _smooth_signal(rng, t, (0.1, 1.0))
    return CameraPath(
        focal=focal,
        principal=np.stack([cx, cy], axis=1),
        roll=roll,
        height=float(rng.uniform(1.0, 1.45)),
        shake=shake,
    )


def _value_noise(rng: np.random.Generator, size: int = 256, sigma: float = 3.0) -> np.ndarray:
    """(size, size) smooth tileable noise in [-1, 1]."""
    field = gaussian_filter(rng.normal(size=(size, size)), sigma=sigma, mode="wrap")
    return field / max(np.abs(field).max(), 1e-9)


def _palette(rng: np.random.Generator, base: tuple[float, float, float], spread: float) -> np.ndarray:
    return np.clip(np.asarray(base) + rng.uniform(-spread, spread, size=3), 0.0, 1.0)


@dataclass(frozen=True)
class Backdrop:
    """A procedural background (indoor room or outdoor place).

    Attributes:
        kind: "indoor" or "outdoor".
        floor: "tiles", "planks", "carpet", "grass", "asphalt" or "sand".
        wall_distance: metres to the back wall (indoor), inf outdoors.
        colors: named RGB colours in [0, 1].
        tile_size: metres (tiles, planks).
        noise_fine, noise_coarse: (256, 256) textures in [-1, 1].
        skyline: (512,) elevation of far scenery (radians) over azimuth (outdoor).
        decorations: (N, 6) wall rectangles x0, x1 (m, wall coords), y0, y1 (m above
            floor), colour index, style.
        brightness: global light level.
    """

    kind: str
    floor: str
    wall_distance: float
    colors: dict[str, np.ndarray]
    tile_size: float
    noise_fine: np.ndarray
    noise_coarse: np.ndarray
    skyline: np.ndarray
    decorations: np.ndarray
    brightness: float

    def render(self, focal: float, principal: np.ndarray, roll: float, camera_height: float, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Background colour of every pixel for one frame.

        Args:
            focal: pixels; principal: (2,) pixels; roll: radians; camera_height: metres.
            width, height: image size, pixels.

        Returns:
            ((H, W, 3) float32 RGB in [0, 1], (H, W, 2) float32 ground coordinates X, Z in
            metres (NaN off the ground), used for shadows).
        """
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        u = xs + 0.5 - principal[0]
        v = ys + 0.5 - principal[1]
        c, s = np.cos(roll), np.sin(roll)
        # Undo the roll: image coordinates back into the upright camera.
        a = c * u + s * v
        b = -s * u + c * v
        rgb = np.zeros((height, width, 3))
        ground = b > 1e-6
        z_ground = np.where(ground, focal * camera_height / np.maximum(b, 1e-6), np.inf)
        x_ground = a * z_ground / focal
        on_floor = ground & (z_ground < self.wall_distance)
        ground_xz = np.full((height, width, 2), np.nan)
        ground_xz[on_floor, 0] = x_ground[on_floor]
        ground_xz[on_floor, 1] = z_ground[on_floor]
        # Depth covered by one pixel row: textures finer than that are averaged away.
        footprint = z_ground[on_floor] ** 2 / (focal * camera_height)
        rgb[on_floor] = self._floor_color(x_ground[on_floor], z_ground[on_floor], footprint)
        rest = ~on_floor
        if self.kind == "indoor":
            wx = a[rest] * self.wall_distance / focal
            wy = camera_height - b[rest] * self.wall_distance / focal  # metres above the floor
            rgb[rest] = self._wall_color(wx, wy)
        else:
            rgb[rest] = self._sky_color(a[rest] / focal, -b[rest] / focal)
        rgb = np.clip(rgb * self.brightness, 0.0, 1.0)
        return rgb.astype(np.float32), ground_xz.astype(np.float32)

    def _tex(self, noise: np.ndarray, x: np.ndarray, y: np.ndarray, scale: float) -> np.ndarray:
        n = noise.shape[0]
        ix = np.floor(x * scale).astype(np.int64) % n
        iy = np.floor(y * scale).astype(np.int64) % n
        return noise[iy, ix]

    def _floor_color(self, x: np.ndarray, z: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        col = self.colors
        fine = self._tex(self.noise_fine, x, z, 40.0)
        coarse = self._tex(self.noise_coarse, x, z, 4.0)
        # Texture contrast fades with distance (avoids aliasing near the horizon).
        fade = np.exp(-z / 12.0)[:, None]
        size = self.tile_size
        if self.floor == "tiles":
            ix, iz = np.floor(x / size), np.floor(z / size)
            checker = ((ix + iz) % 2)[:, None]
            base = col["floor_a"] * (1 - checker) + col["floor_b"] * checker
            fx, fz = x / size - ix, z / size - iz
            grout = ((np.minimum(fx, 1 - fx) < 0.03) | (np.minimum(fz, 1 - fz) < 0.03))[:, None]
            base = np.where(grout & (footprint[:, None] < 0.1 * size), col["grout"], base)
            blur = np.clip(2.0 * footprint / size - 0.3, 0.0, 1.0)[:, None]
            base = base * (1 - blur) + 0.5 * (col["floor_a"] + col["floor_b"]) * blur
        elif self.floor == "planks":
            plank = np.floor(x / size)
            shade = self._tex(self.noise_coarse, plank, np.floor(z / 1.5 + plank * 0.37), 1.0)[:, None]
            base = col["floor_a"] * (1 + 0.18 * shade)
            seam = (np.abs(x / size - np.round(x / size)) < 0.04)[:, None]
            base = np.where(seam & (fade > 0.2), base * 0.7, base)
        elif self.floor == "asphalt":
            base = np.broadcast_to(col["floor_a"], (x.size, 3)).copy()
            line = (np.abs(x - self.tile_size * 3) < 0.06)[:, None] & (np.mod(z, 3.0) < 1.8)[:, None]
            base = np.where(line, col["floor_b"], base)
        else:  # grass, carpet, sand: noisy plain colours
            mix = (0.5 + 0.5 * coarse)[:, None]
            base = col["floor_a"] * (1 - mix) + col["floor_b"] * mix
        grain = {"grass": 0.25, "sand": 0.12, "carpet": 0.1, "asphalt": 0.15}.get(self.floor, 0.07)
        out = base * (1 + (grain * fine + 0.08 * coarse)[:, None] * fade)
        fog = (1 - np.exp(-z / 60.0))[:, None]
        return np.clip(out * (1 - fog) + col["haze"] * fog, 0, 1)

    def _wall_color(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        col = self.colors
        fine = self._tex(self.noise_fine, x, y, 60.0)
        base = np.broadcast_to(col["wall"], (x.size, 3)).copy()
        if self.floor in ("planks", "carpet"):
            stripes = (np.mod(x, 0.5) < 0.25)[:, None]
            base = np.where(stripes, base * 0.93, base)
        for x0, x1, y0, y1, ci, style in self.decorations:
            inside = (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
            if not inside.any():
                continue
            colour = col[f"deco{int(ci)}"]
            if style > 0.5:  # window: bright with frame bars
                frame = (np.abs(x - (x0 + x1) / 2) < 0.03) | (np.abs(y - (y0 + y1) / 2) < 0.03)
                fill = np.where(frame[:, None], col["trim"], colour)
            else:
                border = (x - x0 < 0.04) | (x1 - x < 0.04) | (y - y0 < 0.04) | (y1 - y < 0.04)
                fill = np.where(border[:, None], col["trim"], colour)
            base[inside] = fill[inside]
        skirting = (y < 0.1)[:, None]
        base = np.where(skirting, col["trim"], base)
        ceiling = (y > 2.8)[:, None]
        base = np.where(ceiling, col["ceiling"], base)
        return np.clip(base * (1 + 0.05 * fine[:, None]), 0, 1)

    def _sky_color(self, azimuth: np.ndarray, elevation: np.ndarray) -> np.ndarray:
        col = self.colors
        sky = col["sky_low"] + (col["sky_high"] - col["sky_low"]) * np.clip(elevation / 0.6, 0, 1)[:, None]
        idx = np.clip(((azimuth + 1.5) / 3.0 * (self.skyline.size - 1)).astype(np.int64), 0, self.skyline.size - 1)
        scenery = elevation < self.skyline[idx]
        fine = self._tex(self.noise_fine, azimuth, elevation, 300.0)
        far = col["far"] * (1 + 0.12 * fine[:, None])
        return np.clip(np.where(scenery[:, None], far, sky), 0, 1)


def sample_backdrop(rng: np.random.Generator) -> Backdrop:
    """A random indoor or outdoor background."""
    indoor = rng.random() < 0.5
    floor = str(rng.choice(["tiles", "planks", "carpet"] if indoor else ["grass", "asphalt", "sand", "tiles"]))
    colors = {
        "haze": _palette(rng, (0.75, 0.78, 0.8), 0.08),
        "grout": _palette(rng, (0.55, 0.55, 0.52), 0.08),
        "trim": _palette(rng, (0.85, 0.84, 0.8), 0.1),
        "ceiling": _palette(rng, (0.92, 0.92, 0.9), 0.04),
        "wall": _palette(rng, tuple(rng.choice([(0.82, 0.78, 0.68), (0.7, 0.78, 0.82), (0.85, 0.85, 0.85), (0.78, 0.7, 0.62), (0.62, 0.72, 0.6)])), 0.06),
        "sky_low": _palette(rng, (0.82, 0.87, 0.92), 0.05),
        "sky_high": _palette(rng, (0.45, 0.62, 0.88), 0.08),
        "far": _palette(rng, tuple(rng.choice([(0.28, 0.4, 0.25), (0.45, 0.45, 0.5), (0.35, 0.38, 0.3)])), 0.05),
    }
    floor_colors = {
        "tiles": ((0.8, 0.78, 0.74), (0.45, 0.42, 0.4)),
        "planks": ((0.62, 0.45, 0.28), (0.55, 0.38, 0.22)),
        "carpet": ((0.55, 0.3, 0.3), (0.45, 0.25, 0.28)),
        "grass": ((0.25, 0.48, 0.18), (0.38, 0.55, 0.22)),
        "asphalt": ((0.32, 0.32, 0.33), (0.9, 0.88, 0.8)),
        "sand": ((0.82, 0.74, 0.55), (0.72, 0.63, 0.45)),
    }[floor]
    colors["floor_a"] = _palette(rng, floor_colors[0], 0.06)
    colors["floor_b"] = _palette(rng, floor_colors[1], 0.06)
    decorations = []
    for i in range(4):
        colors[f"deco{i}"] = rng.uniform(0.15, 0.95, size=3)
    if indoor:
        x = rng.uniform(-6, -3)
        while x < 6:
            w = rng.uniform(0.6, 1.6)
            y0 = rng.uniform(0.8, 1.3)
            decorations.append([x, x + w, y0, y0 + rng.uniform(0.5, 1.2), rng.integers(4), float(rng.random() < 0.35)])
            x += w + rng.uniform(0.8, 3.0)
    skyline = gaussian_filter(rng.normal(size=512), sigma=rng.uniform(3, 12), mode="wrap")
    skyline = 0.02 + 0.06 * (skyline - skyline.min()) / max(np.ptp(skyline), 1e-9)
    if rng.random() < 0.4:  # buildings: a blocky skyline
        edges = np.sort(rng.integers(0, 512, size=12))
        levels = rng.uniform(0.02, 0.12, size=13)
        skyline = levels[np.searchsorted(edges, np.arange(512))]
    return Backdrop(
        kind="indoor" if indoor else "outdoor",
        floor=floor,
        wall_distance=float(rng.uniform(7.0, 12.0)) if indoor else float("inf"),
        colors=colors,
        tile_size=float(rng.uniform(0.3, 0.8) if floor == "tiles" else rng.uniform(0.12, 0.25)),
        noise_fine=_value_noise(rng, sigma=1.0),
        noise_coarse=_value_noise(rng, sigma=6.0),
        skyline=skyline,
        decorations=np.array(decorations, dtype=np.float64).reshape(-1, 6),
        brightness=float(rng.uniform(0.85, 1.08)),
    )


def box_mesh(center: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An axis-aligned box with flat faces (4 vertices per face).

    Args:
        center: (3,) metres; size: (3,) edge lengths, metres.

    Returns:
        (vertices (24, 3), faces (12, 3) counter-clockwise from outside, normals (24, 3)).
    """
    center = np.asarray(center, dtype=np.float64)
    half = np.asarray(size, dtype=np.float64) / 2
    verts, faces, normals = [], [], []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            n = np.zeros(3)
            n[axis] = sign
            u = np.zeros(3)
            u[(axis + 1) % 3] = 1.0
            w = np.cross(n, u)
            base = len(verts)
            for du, dw in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                verts.append(center + half * (n + du * u + dw * w))
                normals.append(n)
            faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    return np.array(verts), np.array(faces, dtype=np.int64), np.array(normals)


class BackgroundPlate:
    """A backdrop rendered once per clip, warped to every frame.

    Zoom, principal-point shift and roll of the scene camera are similarity transforms of
    the image about the principal point, so one render at the largest focal length over a
    canvas covering every frame's view, warped with ``cv2.warpAffine``, equals rendering
    each frame (up to bilinear resampling) at a fraction of the cost.
    """

    def __init__(self, backdrop: Backdrop, camera: CameraPath, width: int, height: int):
        self.camera = camera
        self.width, self.height = width, height
        self.ref_focal = float(camera.focal.max())
        corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], dtype=np.float64)
        pts = []
        for f, c, r in zip(camera.focal, camera.principal, camera.roll):
            uv = (corners - c) / f
            cs, sn = np.cos(r), np.sin(r)
            pts.append(np.stack([cs * uv[:, 0] + sn * uv[:, 1], -sn * uv[:, 0] + cs * uv[:, 1]], 1))
        pts = np.concatenate(pts) * self.ref_focal
        lo = np.floor(pts.min(axis=0)) - 4
        hi = np.ceil(pts.max(axis=0)) + 4
        self.ref_principal = -lo  # canvas pixel of the optical axis
        size = (hi - lo).astype(int)
        self.image, _ = backdrop.render(self.ref_focal, self.ref_principal, 0.0, camera.height, int(size[0]), int(size[1]))

    def frame(self, index: int) -> np.ndarray:
        """(H, W, 3) float32 RGB background of frame ``index``."""
        import cv2

        f = self.camera.focal[index]
        c = self.camera.principal[index]
        r = self.camera.roll[index]
        k = f / self.ref_focal
        cs, sn = np.cos(r), np.sin(r)
        # frame pixel = c + k * R(roll) (canvas pixel - ref principal), R = [[c, -s], [s, c]].
        rot = k * np.array([[cs, -sn], [sn, cs]])
        shift = c - rot @ self.ref_principal
        # warpAffine samples pixel centres at integer coordinates: shift by half a pixel.
        shift = shift + rot @ np.array([0.5, 0.5]) - 0.5
        matrix = np.concatenate([rot, shift[:, None]], axis=1)
        return cv2.warpAffine(
            self.image, matrix, (self.width, self.height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )

    def ground_pixel(self, index: int, x: float, z: float) -> np.ndarray:
        """(2,) pixel of the ground point (x, z) metres in frame ``index``."""
        f, c, r = self.camera.focal[index], self.camera.principal[index], self.camera.roll[index]
        a, b = f * x / z, f * self.camera.height / z
        cs, sn = np.cos(r), np.sin(r)
        return c + np.array([cs * a - sn * b, sn * a + cs * b])

    def apply_shadows(self, image: np.ndarray, index: int, feet: list[tuple[float, float, float]], strength: float = 0.45) -> None:
        """Darken the ground under people in place (soft elliptic contact shadows).

        Args:
            image: (H, W, 3) float32 frame to modify.
            index: frame index.
            feet: (x, z, radius) metres of each person's ground contact point.
        """
        f, c, r = self.camera.focal[index], self.camera.principal[index], self.camera.roll[index]
        h = self.camera.height
        cs, sn = np.cos(r), np.sin(r)
        for x, z, radius in feet:
            if z <= 0.1:
                continue
            center = self.ground_pixel(index, x, z)
            reach = 2.5 * radius * f / z
            x0, x1 = int(max(center[0] - reach, 0)), int(min(center[0] + reach + 1, self.width))
            y0, y1 = int(max(center[1] - reach, 0)), int(min(center[1] + reach + 1, self.height))
            if x0 >= x1 or y0 >= y1:
                continue
            ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
            u, v = xs + 0.5 - c[0], ys + 0.5 - c[1]
            a, b = cs * u + sn * v, -sn * u + cs * v
            ground = b > 1e-6
            zg = np.where(ground, f * h / np.maximum(b, 1e-6), np.inf)
            xg = a * zg / f
            d2 = ((xg - x) / radius) ** 2 + ((zg - z) / (0.8 * radius)) ** 2
            shade = np.where(ground, strength * np.exp(-d2), 0.0)
            image[y0:y1, x0:x1] *= (1.0 - shade)[..., None].astype(np.float32)
