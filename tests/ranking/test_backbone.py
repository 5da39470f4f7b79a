from __future__ import annotations

import numpy as np
import pytest
import torch

from ranking.backbone import BackboneError, create_backbone, resolve_device, weights_fingerprint
from ranking.features import Embedder, gem, normalise_light, pool, square_pad

CAT_CLASSES = set(range(281, 286))  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_backbone_loads_offline_and_recognises_a_cat(no_network: None) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    model = create_backbone("efficientnet_lite2")
    embedder = Embedder(light_norm=False, model=model, device="cpu")
    logits = embedder.classify([skimage_data.chelsea(), skimage_data.coffee()])
    assert int(np.argmax(logits[0])) in CAT_CLASSES
    assert int(np.argmax(logits[1])) not in CAT_CLASSES


def test_untrained_backbone_does_not_recognise_the_cat() -> None:
    """Guards the test above: the cat is found because of the packaged weights, not by chance."""
    skimage_data = pytest.importorskip("skimage.data")
    torch.manual_seed(0)
    embedder = Embedder(light_norm=False, model=create_backbone(pretrained=False), device="cpu")
    logits = embedder.classify([skimage_data.chelsea()])
    assert np.sort(torch.softmax(torch.from_numpy(logits[0]), 0).numpy())[-1] < 0.2


def test_unknown_backbone_and_device_are_clear_errors() -> None:
    with pytest.raises(BackboneError, match="unknown backbone"):
        create_backbone("resnet9000")
    with pytest.raises(BackboneError, match="unknown device"):
        resolve_device("tpu")


def test_fingerprint_is_stable() -> None:
    assert weights_fingerprint("efficientnet_lite2") == weights_fingerprint("efficientnet_lite2")
    assert weights_fingerprint("efficientnet_lite2").startswith("efficientnet_lite2:")


def test_embeddings_are_unit_length_and_batch_independent() -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (80 + 7 * i, 64, 3), dtype=np.uint8) for i in range(5)]
    embedder = Embedder(image_size=96, batch_size=2, device="cpu", engine="torch")
    vectors = embedder.embed(images)
    assert vectors.shape == (5, 1280) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    single = np.concatenate([embedder.embed([image]) for image in images])
    np.testing.assert_allclose(vectors, single, atol=1e-4)


def test_onnx_and_torch_engines_agree(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    skimage_data = pytest.importorskip("skimage.data")
    images = [skimage_data.chelsea(), skimage_data.coffee(), skimage_data.astronaut(), skimage_data.rocket()]
    torch_vectors = Embedder(image_size=128, engine="torch", device="cpu").embed(images)
    onnx_embedder = Embedder(image_size=128, engine="onnx", device="cpu", cache_dir=tmp_path)
    onnx_vectors = onnx_embedder.embed(images)
    cosine = np.sum(torch_vectors * onnx_vectors, axis=1)
    assert cosine.min() >= 0.999, cosine
    exports = [path for path in tmp_path.glob("*.onnx") if not path.name.endswith(".optimised.onnx")]
    assert len(exports) == 1  # exported once, cached (beside it, the runtime's optimised form for this machine)
    with pytest.raises(ValueError, match="128 px"):
        onnx_embedder.engine(np.zeros((1, 3, 96, 96), np.float32))


def test_gem_lies_between_mean_and_max_and_matches_the_torch_formula() -> None:
    features = np.random.default_rng(0).random((2, 4, 3, 3), dtype=np.float32)
    mean, peak = features.mean(axis=(-2, -1)), features.max(axis=(-2, -1))
    pooled = gem(features, p=3.0)
    assert np.all(pooled >= mean - 1e-6) and np.all(pooled <= peak + 1e-6)
    reference = torch.from_numpy(features).clamp(min=1e-6).pow(3).mean(dim=(-2, -1)).pow(1 / 3).numpy()
    np.testing.assert_allclose(pooled, reference, rtol=1e-5)
    np.testing.assert_allclose(gem(features, p=2.0), np.sqrt((features**2).mean(axis=(-2, -1))), rtol=1e-5)
    np.testing.assert_allclose(pool(features, "gap"), mean)
    with pytest.raises(ValueError):
        pool(features, "max")


def test_light_normalisation_undoes_a_dim_colour_cast() -> None:
    scene = np.full((64, 64, 3), 250, np.uint8)
    scene[16:48, 16:48] = (40, 90, 160)
    dim = (scene.astype(np.float32) * np.array([0.5, 0.45, 0.35])).astype(np.uint8)
    restored = normalise_light(dim)
    assert np.abs(restored[0, 0].astype(int) - 255).max() <= 3  # the white background is white again
    assert (
        np.abs(restored.astype(int) - scene.astype(int)).mean() < np.abs(dim.astype(int) - scene.astype(int)).mean() / 3
    )


def test_square_pad_keeps_the_image_centred() -> None:
    image = np.zeros((20, 40, 3), np.uint8)
    padded = square_pad(image)
    assert padded.shape == (40, 40, 3)
    assert padded[10:30].max() == 0 and padded[:10].min() == 255
