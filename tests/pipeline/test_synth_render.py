"""pipeline.synth.render: coverage, z-order, culling, anti-aliasing and the overlay API."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.synth.render import Mesh, composite, rasterize, render, render_meshes, vertex_normals
from pipeline.synth.scene import box_mesh


def icosphere(subdivisions: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere, faces counter-clockwise seen from outside."""
    t = (1 + 5**0.5) / 2
    verts = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
             (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]  # fmt: skip
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
             (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
             (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]  # fmt: skip
    v = [np.array(p, dtype=float) / np.linalg.norm(p) for p in verts]
    for _ in range(subdivisions):
        cache: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                m = v[a] + v[b]
                v.append(m / np.linalg.norm(m))
                cache[key] = len(v) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return np.array(v), np.array(faces)


SPHERE_V, SPHERE_F = icosphere(4)


def sphere(center, radius, depth, color=(0.8, 0.3, 0.2), flip=False) -> Mesh:
    v = SPHERE_V * radius + np.array([center[0], center[1], depth])
    f = SPHERE_F[:, ::-1] if flip else SPHERE_F
    return Mesh(v, f, np.array(color))


def test_disc_coverage_matches_area_and_centre():
    raster = rasterize([sphere((40.0, 30.0), 20.0, 100.0)], 60, 80)
    assert raster.covered.sum() == pytest.approx(np.pi * 20.0**2, rel=0.01)
    ys, xs = np.nonzero(raster.covered)
    # Pixel centres are at +0.5: the mask centroid is the disc centre minus half a pixel.
    assert xs.mean() + 0.5 == pytest.approx(40.0, abs=0.05)
    assert ys.mean() + 0.5 == pytest.approx(30.0, abs=0.05)
    # Depth is that of the front surface (the sphere's near cap).
    assert raster.depth[30, 40] == pytest.approx(80.0, abs=0.5)


def test_nearer_mesh_wins_and_ids_are_reported():
    far = sphere((40.0, 30.0), 20.0, 200.0)
    near = sphere((55.0, 30.0), 12.0, 100.0)
    raster = rasterize([far, near], 60, 80)
    assert raster.mesh_index[30, 55] == 1
    assert raster.mesh_index[30, 30] == 0
    assert raster.mesh_index[0, 0] == -1 and np.isinf(raster.depth[0, 0])
    # Order of the list does not matter for visibility.
    swapped = rasterize([near, far], 60, 80)
    assert swapped.mesh_index[30, 55] == 0
    bary = raster.bary[raster.covered]
    assert np.allclose(bary.sum(axis=1), 1.0, atol=1e-4) and (bary >= -1e-4).all()


def test_winding_is_detected_so_culling_keeps_the_front():
    a = rasterize([sphere((40.0, 30.0), 20.0, 100.0)], 60, 80)
    b = rasterize([sphere((40.0, 30.0), 20.0, 100.0, flip=True)], 60, 80)
    assert (a.covered == b.covered).all()
    assert np.allclose(a.depth[a.covered], b.depth[b.covered], atol=1e-3)
    # Without culling, the same front surface wins the z-test.
    c = rasterize([sphere((40.0, 30.0), 20.0, 100.0)], 60, 80, cull_backfaces=False)
    assert np.allclose(a.depth[a.covered], c.depth[c.covered], atol=1e-3)


def test_large_triangles_take_the_chunked_path():
    # Two triangles covering the whole 64x48 image (boxes far above the fast-path size).
    v = np.array([[0, 0, 5.0], [64, 0, 5.0], [64, 48, 5.0], [0, 48, 5.0]])
    quad = Mesh(v, np.array([[0, 2, 1], [0, 3, 2]]), np.array([0.5, 0.5, 0.5]), outward=True)
    raster = rasterize([quad], 48, 64)
    assert raster.covered.all()


def test_supersampling_antialiases_edges_and_keeps_area():
    result = render([sphere((40.0, 30.0), 20.0, 100.0)], 60, 80, supersample=2)
    cov = result.coverage
    assert cov.sum() == pytest.approx(np.pi * 20.0**2, rel=0.01)
    edge = (cov > 0) & (cov < 1)
    assert edge.sum() > 50  # fractional pixels along the rim
    assert result.raster.depth.shape == (120, 160)


def test_lambert_shading_is_brighter_towards_the_light():
    result = render([sphere((40.0, 30.0), 25.0, 100.0, color=(0.7, 0.7, 0.7))], 60, 80)
    lum = result.color.mean(axis=2)
    # The key light comes from the upper left (towards the camera).
    assert lum[16, 26] > lum[44, 54] + 0.1


def test_render_meshes_overlay_blends_and_checks_input():
    image = np.full((60, 80, 3), 200, dtype=np.uint8)
    opaque = render_meshes(image, [sphere((40.0, 30.0), 15.0, 50.0, color=(0.0, 0.0, 1.0))], alpha=1.0)
    half = render_meshes(image, [sphere((40.0, 30.0), 15.0, 50.0, color=(0.0, 0.0, 1.0))], alpha=0.5)
    assert (opaque[0, 0] == 200).all() and (half[0, 0] == 200).all()
    centre_red = [int(opaque[30, 40, 0]), int(half[30, 40, 0]), 200]
    assert centre_red[0] < centre_red[1] < centre_red[2]
    assert (render_meshes(image, []) == image).all()
    with pytest.raises(ValueError, match="uint8"):
        render_meshes(image.astype(np.float32), [])
    result = render([sphere((40.0, 30.0), 15.0, 50.0)], 30, 40)
    with pytest.raises(ValueError, match="sizes differ"):
        composite(image, result)


def test_mesh_validates_shapes():
    with pytest.raises(ValueError, match="vertices"):
        Mesh(np.zeros((4, 2)), np.zeros((1, 3), int), np.ones(3))
    with pytest.raises(ValueError, match="color"):
        Mesh(np.zeros((4, 3)), np.zeros((1, 3), int), np.ones(4))
    with pytest.raises(ValueError, match="normals"):
        Mesh(np.zeros((4, 3)), np.zeros((1, 3), int), np.ones(3), normals=np.zeros((3, 3)))


def test_vertex_normals_and_box_mesh_point_outwards():
    normals = vertex_normals(SPHERE_V, SPHERE_F)
    assert np.allclose(np.einsum("ij,ij->i", normals, SPHERE_V), 1.0, atol=1e-2)
    verts, faces, box_normals = box_mesh(np.array([1.0, 2.0, 3.0]), np.array([0.4, 0.5, 0.6]))
    assert verts.min(axis=0) == pytest.approx([0.8, 1.75, 2.7]) and verts.max(axis=0) == pytest.approx([1.2, 2.25, 3.3])
    face_n = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    centre_dir = verts[faces].mean(axis=1) - np.array([1.0, 2.0, 3.0])
    assert (np.einsum("ij,ij->i", face_n, centre_dir) > 0).all()
    assert np.allclose(np.abs(box_normals).sum(axis=1), 1.0)
