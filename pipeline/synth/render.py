"""A small vectorised software renderer: z-buffered triangles with smooth Lambert shading.

Used by the synthetic corpus (people over procedural backgrounds) and reusable for QA
overlays (a shaded, semi-transparent mesh over a video frame, one colour per track).

Conventions: vertices are given in image space, ``(x, y)`` in pixels of the output image
(origin at the top-left pixel *corner*, x right, y down, pixel ``(i, j)`` has its centre at
``(i + 0.5, j + 0.5)``) plus a depth (larger = farther; any unit, consistent across the
meshes of one call). The view frame for shading is x right, y down, z away from the
camera, so a surface facing the camera has a normal with negative z.

Rasterisation (numpy, no loops over triangles): every front-facing triangle is expanded to
the pixel centres of its bounding box, tested with barycentric edge functions, and the
nearest sample per pixel wins through ``np.minimum.at`` on the depth buffer. Triangles are
processed in chunks so memory stays bounded for large (zoomed-in) meshes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "Mesh",
    "Raster",
    "RenderResult",
    "composite",
    "rasterize",
    "render",
    "render_meshes",
    "shade",
    "vertex_normals",
]

# Light directions point from the surface towards the light, view frame (y down, z away).
KEY_LIGHT = np.array([-0.45, -0.65, -0.62])
FILL_LIGHT = np.array([0.6, -0.1, -0.8])
_MAX_SAMPLES_PER_CHUNK = 1_500_000


@dataclass(frozen=True)
class Mesh:
    """One mesh to draw.

    Attributes:
        vertices: (V, 3) float, x px, y px, depth (larger = farther).
        faces: (F, 3) int vertex indices, counter-clockwise seen from outside in a
            right-handed frame (SMPL's winding); see ``normals`` for other meshes.
        color: (3,) or (V, 3) RGB in [0, 1].
        normals: optional (V, 3) unit vertex normals in the view frame (x right, y down,
            z away). Pass them when the depth is not in pixel units (e.g. metres under a
            weak-perspective camera); otherwise they are computed from ``vertices``.
        outward: True when faces wind counter-clockwise seen from outside, False when
            clockwise, None to detect it from the sign of the enclosed volume (closed
            meshes; pass it to save that work on every frame).
    """

    vertices: np.ndarray
    faces: np.ndarray
    color: np.ndarray
    normals: np.ndarray | None = None
    outward: bool | None = None

    def winding(self) -> float:
        """+1 for counter-clockwise faces seen from outside, -1 for clockwise."""
        if self.outward is not None:
            return 1.0 if self.outward else -1.0
        return _winding_sign(np.asarray(self.vertices, dtype=np.float64), np.asarray(self.faces, dtype=np.int64))

    def __post_init__(self) -> None:
        v = np.asarray(self.vertices)
        f = np.asarray(self.faces)
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"Mesh.vertices must be (V, 3) x px, y px, depth; got {v.shape}.")
        if f.ndim != 2 or f.shape[1] != 3:
            raise ValueError(f"Mesh.faces must be (F, 3) vertex indices; got {f.shape}.")
        c = np.asarray(self.color)
        if c.shape not in ((3,), (v.shape[0], 3)):
            raise ValueError(f"Mesh.color must be (3,) or ({v.shape[0]}, 3) RGB in [0, 1]; got {c.shape}.")
        if self.normals is not None and np.shape(self.normals) != v.shape:
            raise ValueError(f"Mesh.normals must be {v.shape} like the vertices; got {np.shape(self.normals)}.")


@dataclass(frozen=True)
class Raster:
    """Per-pixel result of :func:`rasterize` at the raster's own resolution.

    Attributes:
        depth: (H, W) float64 depth of the nearest surface, +inf where empty.
        mesh_index: (H, W) int32 index of the mesh seen there, -1 where empty.
        face_index: (H, W) int32 face index within that mesh, -1 where empty.
        bary: (H, W, 3) float32 barycentric weights of the face's three vertices.
    """

    depth: np.ndarray
    mesh_index: np.ndarray
    face_index: np.ndarray
    bary: np.ndarray

    @property
    def covered(self) -> np.ndarray:
        """(H, W) bool, True where some mesh is drawn."""
        return self.mesh_index >= 0


@dataclass(frozen=True)
class RenderResult:
    """Output of :func:`render`.

    Attributes:
        color: (H, W, 3) float32 premultiplied RGB in [0, 1] (colour times coverage).
        coverage: (H, W) float32 fraction of each output pixel covered by meshes.
        raster: the z-buffer at ``supersample`` times the output resolution.
        supersample: samples per pixel along each axis.
    """

    color: np.ndarray
    coverage: np.ndarray
    raster: Raster
    supersample: int


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals.

    Args:
        vertices: (V, 3) positions in an isotropic right-handed frame.
        faces: (F, 3) int, counter-clockwise from outside.

    Returns:
        (V, 3) float64 unit normals (outward for counter-clockwise faces).
    """
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    normals = np.zeros_like(v)
    for k in range(3):
        np.add.at(normals, f[:, k], face_n)
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    return normals / np.maximum(norm, 1e-12)


def _winding_sign(vertices: np.ndarray, faces: np.ndarray) -> float:
    """+1 when faces wind counter-clockwise from outside (positive signed volume), else -1.

    The sign survives any positive per-axis scaling (pixels vs metres for depth)."""
    v = vertices - vertices.mean(axis=0)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    volume = np.einsum("ij,ij->i", a, np.cross(b, c)).sum()
    return 1.0 if volume >= 0 else -1.0


_SMALL_BOX = 4  # faces whose pixel box is at most this wide and high take the fast path


def _pixel_samples(coef, x0, y0, nx, ny, count):
    """Pixel centres inside each face: yields (face, px, py, w0, w1, w2) arrays.

    Faces with small pixel boxes (most of a mesh) are grouped by box shape and tested by
    broadcasting over a fixed (ny, nx) window; larger ones are expanded sample by sample,
    in chunks that bound memory.
    """
    small = (nx <= _SMALL_BOX) & (ny <= _SMALL_BOX)
    key = np.where(small, (ny - 1) * _SMALL_BOX + (nx - 1), -1)
    for k in np.unique(key[small]):
        f = np.nonzero(key == k)[0]
        kx, ky = int(k % _SMALL_BOX) + 1, int(k // _SMALL_BOX) + 1
        cx = np.arange(kx, dtype=np.float32)[None, None, :] + 0.5  # relative to the box corner
        cy = np.arange(ky, dtype=np.float32)[None, :, None] + 0.5
        c = coef[:, f, None, None]
        w0 = c[0] * cx + c[1] * cy + c[2]
        w1 = c[3] * cx + c[4] * cy + c[5]
        w2 = c[6] * cx + c[7] * cy + c[8]
        inside = (w0 >= -1e-6) & (w1 >= -1e-6) & (w2 >= -1e-6)
        fi, row, col = np.nonzero(inside)
        if fi.size:
            yield f[fi], x0[f[fi]] + col, y0[f[fi]] + row, w0[inside], w1[inside], w2[inside]
    big = np.nonzero(~small)[0]
    if big.size == 0:
        return
    counts = count[big]
    bounds = np.cumsum(counts)
    first = 0
    while first < big.size:
        base = bounds[first - 1] if first else 0
        stop = max(int(np.searchsorted(bounds, base + _MAX_SAMPLES_PER_CHUNK, side="right")), first + 1)
        cnt = counts[first:stop]
        local = np.repeat(big[first:stop], cnt)
        offset = np.arange(local.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        row, col = np.divmod(offset, nx[local])
        px, py = x0[local] + col, y0[local] + row
        cx = col.astype(np.float32) + 0.5
        cy = row.astype(np.float32) + 0.5
        c = coef[:, local]
        w0 = c[0] * cx + c[1] * cy + c[2]
        w1 = c[3] * cx + c[4] * cy + c[5]
        w2 = c[6] * cx + c[7] * cy + c[8]
        inside = (w0 >= -1e-6) & (w1 >= -1e-6) & (w2 >= -1e-6)
        first = stop
        if inside.any():
            yield local[inside], px[inside], py[inside], w0[inside], w1[inside], w2[inside]


def rasterize(meshes: list[Mesh], height: int, width: int, cull_backfaces: bool = True) -> Raster:
    """Z-buffer the meshes into a (height, width) raster.

    Args:
        meshes: meshes in image space of this raster (x, y pixels, depth).
        height, width: raster size, pixels.
        cull_backfaces: skip faces turned away from the camera (closed meshes).

    Returns:
        The :class:`Raster` (nearest surface per pixel centre).
    """
    depth = np.full(height * width, np.inf)
    winner_mesh = np.full(height * width, -1, dtype=np.int32)
    winner_face = np.full(height * width, -1, dtype=np.int32)
    winner_bary = np.zeros((height * width, 3), dtype=np.float32)
    # Gather the drawable faces of all meshes, then test them in one pass (fewer numpy calls).
    parts: list[tuple] = []
    for mesh_id, mesh in enumerate(meshes):
        v = np.asarray(mesh.vertices, dtype=np.float64)
        faces = np.asarray(mesh.faces, dtype=np.int64)
        if faces.shape[0] == 0:
            continue
        x = v[faces, 0]  # (F, 3)
        y = v[faces, 1]
        # Signed doubled area in screen space (y down): < 0 for faces seen counter-clockwise
        # from outside in the right-handed view frame, i.e. facing the camera.
        area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
        keep = np.abs(area) > 1e-12
        if cull_backfaces:
            keep &= area * mesh.winding() < 0
        # Elementwise min/max of the three columns (much faster than reducing over axis 1).
        x_lo = np.minimum(np.minimum(x[:, 0], x[:, 1]), x[:, 2])
        x_hi = np.maximum(np.maximum(x[:, 0], x[:, 1]), x[:, 2])
        y_lo = np.minimum(np.minimum(y[:, 0], y[:, 1]), y[:, 2])
        y_hi = np.maximum(np.maximum(y[:, 0], y[:, 1]), y[:, 2])
        x0 = np.clip(np.ceil(x_lo - 0.5), 0, width).astype(np.int64)
        x1 = np.clip(np.floor(x_hi - 0.5), -1, width - 1).astype(np.int64)
        y0 = np.clip(np.ceil(y_lo - 0.5), 0, height).astype(np.int64)
        y1 = np.clip(np.floor(y_hi - 0.5), -1, height - 1).astype(np.int64)
        nx = np.maximum(x1 - x0 + 1, 0)
        ny = np.maximum(y1 - y0 + 1, 0)
        count = np.where(keep, nx * ny, 0)
        face_ids = np.nonzero(count)[0]
        if face_ids.size == 0:
            continue
        # Edge functions w_k(px, py) = a_k * px + b_k * py + c_k (barycentric weights).
        # Coordinates are taken relative to each face's box corner (x0, y0) so that float32
        # keeps the weights exact to ~1e-6 whatever the image size.
        xs = x[face_ids] - x0[face_ids, None]
        ys = y[face_ids] - y0[face_ids, None]
        inv = 1.0 / area[face_ids]
        coef = np.empty((9, face_ids.size), dtype=np.float32)
        for k in range(3):
            i, j = (k + 1) % 3, (k + 2) % 3
            coef[3 * k] = (ys[:, i] - ys[:, j]) * inv
            coef[3 * k + 1] = (xs[:, j] - xs[:, i]) * inv
            coef[3 * k + 2] = (xs[:, i] * ys[:, j] - xs[:, j] * ys[:, i]) * inv
        zs = v[faces[face_ids], 2].astype(np.float32)
        parts.append(
            (coef, x0[face_ids], y0[face_ids], nx[face_ids], ny[face_ids], count[face_ids], zs,
             face_ids, np.full(face_ids.size, mesh_id, dtype=np.int32))
        )  # fmt: skip
    if parts:
        coef = np.concatenate([p[0] for p in parts], axis=1)
        x0, y0, nx, ny, count, zs, face_ids, face_mesh = (np.concatenate([p[k] for p in parts]) for k in range(1, 9))
        for local, px, py, w0, w1, w2 in _pixel_samples(coef, x0, y0, nx, ny, count):
            pix = py * width + px
            z = (w0 * zs[local, 0] + w1 * zs[local, 1] + w2 * zs[local, 2]).astype(np.float64)
            np.minimum.at(depth, pix, z)
            won = z <= depth[pix]
            pix, local = pix[won], local[won]
            winner_mesh[pix] = face_mesh[local]
            winner_face[pix] = face_ids[local]
            winner_bary[pix] = np.stack([w0[won], w1[won], w2[won]], axis=1)
    return Raster(
        depth=depth.reshape(height, width),
        mesh_index=winner_mesh.reshape(height, width),
        face_index=winner_face.reshape(height, width),
        bary=winner_bary.reshape(height, width, 3),
    )


def shade(
    raster: Raster,
    meshes: list[Mesh],
    ambient: float = 0.38,
    key: float = 0.62,
    fill: float = 0.18,
    specular: float = 0.12,
) -> np.ndarray:
    """Smooth-shaded colour of every covered pixel of a raster.

    Lighting (a key light from the upper left, a fill light from the right, ambient and a
    Blinn highlight) is evaluated per vertex and interpolated with the barycentric weights
    (Gouraud): with triangles of a few pixels this matches per-pixel shading.

    Args:
        raster: from :func:`rasterize` with the same ``meshes``.
        meshes: the meshes.

    Returns:
        (H, W, 3) float32 RGB in [0, 1]; 0 where nothing is drawn.
    """
    h, w = raster.mesh_index.shape
    out = np.zeros((h * w, 3), dtype=np.float32)
    mesh_flat = raster.mesh_index.reshape(-1)
    covered = np.flatnonzero(mesh_flat >= 0)
    if covered.size == 0:
        return out.reshape(h, w, 3)
    key_l = KEY_LIGHT / np.linalg.norm(KEY_LIGHT)
    fill_l = FILL_LIGHT / np.linalg.norm(FILL_LIGHT)
    half = key_l + np.array([0.0, 0.0, -1.0])
    half /= np.linalg.norm(half)
    vertex_colors, face_lists, face_offsets = [], [], [0]
    n_vert = 0
    for mesh in meshes:
        faces = np.asarray(mesh.faces, dtype=np.int64)
        verts = np.asarray(mesh.vertices, dtype=np.float64)
        normals = mesh.normals
        if normals is None:
            normals = vertex_normals(verts, faces) * mesh.winding()
        n = np.asarray(normals, dtype=np.float64)
        diffuse = ambient + key * np.clip(n @ key_l, 0, None) + fill * np.clip(n @ fill_l, 0, None)
        spec = specular * np.clip(n @ half, 0, None) ** 24
        base = np.broadcast_to(np.asarray(mesh.color, dtype=np.float64), verts.shape)
        vertex_colors.append(np.clip(base * diffuse[:, None] + spec[:, None], 0.0, 1.0).astype(np.float32))
        face_lists.append(faces + n_vert)
        n_vert += verts.shape[0]
        face_offsets.append(face_offsets[-1] + faces.shape[0])
    colors = np.concatenate(vertex_colors)
    all_faces = np.concatenate(face_lists)
    tri = all_faces[np.asarray(face_offsets)[mesh_flat[covered]] + raster.face_index.reshape(-1)[covered]]
    b = raster.bary.reshape(-1, 3)[covered]
    out[covered] = colors[tri[:, 0]] * b[:, :1] + colors[tri[:, 1]] * b[:, 1:2] + colors[tri[:, 2]] * b[:, 2:]
    return out.reshape(h, w, 3)


def _downsample(values: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter by an integer factor (mean of factor x factor blocks), float32."""
    values = values.astype(np.float32, copy=False)
    if factor == 1:
        return values
    import cv2

    h, w = values.shape[0] // factor, values.shape[1] // factor
    return cv2.resize(values, (w, h), interpolation=cv2.INTER_AREA)


def render(meshes: list[Mesh], height: int, width: int, supersample: int = 1) -> RenderResult:
    """Rasterise and shade meshes given in output-image pixel coordinates.

    Args:
        meshes: meshes, x/y in pixels of the (height, width) output.
        height, width: output size, pixels.
        supersample: samples per pixel along each axis (2 = 4 samples: anti-aliased edges).

    Returns:
        :class:`RenderResult` (premultiplied colour, coverage, supersampled raster).
    """
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}.")
    scaled = meshes
    if supersample > 1:
        scale = np.array([supersample, supersample, 1.0])
        scaled = [
            Mesh(np.asarray(m.vertices, dtype=np.float64) * scale, m.faces, m.color, m.normals, m.outward)
            for m in meshes
        ]
    raster = rasterize(scaled, height * supersample, width * supersample)
    color = shade(raster, scaled)  # zero where nothing is drawn: premultiplied already
    return RenderResult(
        color=_downsample(color, supersample),
        coverage=_downsample(raster.covered.astype(np.float32), supersample),
        raster=raster,
        supersample=supersample,
    )


def composite(image: np.ndarray, result: RenderResult, alpha: float = 1.0) -> np.ndarray:
    """Blend a render over an image.

    Args:
        image: (H, W, 3) uint8 RGB background.
        result: from :func:`render` at the same (H, W).
        alpha: opacity of the meshes in [0, 1].

    Returns:
        (H, W, 3) uint8 RGB.
    """
    if image.shape[:2] != result.coverage.shape:
        raise ValueError(f"image {image.shape[:2]} and render {result.coverage.shape} sizes differ.")
    bg = image.astype(np.float32) / 255.0
    a = alpha * result.coverage[..., None]
    out = bg * (1.0 - a) + alpha * result.color
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_meshes(
    image: np.ndarray,
    meshes: list[Mesh],
    alpha: float = 1.0,
    supersample: int = 2,
) -> np.ndarray:
    """Draw shaded meshes over an image (e.g. a QA overlay with one colour per track).

    Args:
        image: (H, W, 3) uint8 RGB frame.
        meshes: meshes in the frame's pixel coordinates (x, y) plus depth; for a
            weak-perspective fit ``x = s * X + tx``, pass ``depth = s * Z`` (pixel units,
            so that normals come out right) or give metric normals in ``Mesh.normals``.
        alpha: mesh opacity in [0, 1] (0.6 leaves the person visible underneath).
        supersample: anti-aliasing factor.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"render_meshes needs an (H, W, 3) uint8 RGB image; got {image.shape} {image.dtype}.")
    if not meshes:
        return image.copy()
    result = render(meshes, image.shape[0], image.shape[1], supersample=supersample)
    return composite(image, result, alpha=alpha)
