from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ranking.backbone import (
    PHOTO_TAIL,
    BackboneError,
    create_backbone,
    resolve_weights,
    tuned_stage_count,
    weights_fingerprint,
)
from ranking.features import Embedder
from ranking.finetune import fit_tail, split_backbone, tail_state_dict, tail_vectors, trunk_maps
from ranking.settings import TailTrainSettings
from tests.helpers import draw_watch


def _batch(images: list[np.ndarray], size: int = 64) -> np.ndarray:
    return Embedder(image_size=size, engine="torch", device="cpu", model=create_backbone(pretrained=False)).batch(
        images
    )


def test_trunk_then_tail_is_the_backbone() -> None:
    model = create_backbone(pretrained=False)
    x = torch.from_numpy(_batch([draw_watch(1), draw_watch(2)]))
    for stages in (1, 2, 3):
        trunk, tail = split_backbone(model, stages)
        with torch.inference_mode():
            assert torch.allclose(tail(trunk(x)), model.forward_features(x), atol=1e-5)
    with pytest.raises(ValueError):
        split_backbone(model, 0)


def test_tuning_pulls_views_onto_their_catalogue_photo() -> None:
    model = create_backbone()
    trunk, tail = split_backbone(model, 1)
    watches = [draw_watch(seed, 64) for seed in range(12)]
    rng = np.random.default_rng(0)
    # "photos": darker, noisy copies of each watch, four apiece
    views = [np.clip(w * rng.uniform(0.4, 0.7) + rng.normal(0, 25, w.shape), 0, 255).astype(np.uint8)
             for w in watches for _ in range(4)]  # fmt: skip
    owners = np.repeat(np.arange(12), 4)
    catalog_maps, view_maps = trunk_maps(trunk, _batch(watches), "cpu"), trunk_maps(trunk, _batch(views), "cpu")

    def own_similarity(t: torch.nn.Module) -> float:
        v, c = tail_vectors(t, view_maps), tail_vectors(t, catalog_maps)
        return float(np.mean(np.sum(v * c[owners], axis=1)) - np.mean(v @ c.T))

    before = own_similarity(tail)
    losses: list[float] = []
    settings = TailTrainSettings(stages=1, epochs=6, batch_size=16, lr=1e-3)
    tuned = fit_tail(view_maps, owners, catalog_maps, tail, settings, on_step=lambda e, s, loss: losses.append(loss))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert own_similarity(tuned) > before  # own catalogue photo closer than the others, by more than before
    assert not any(p.requires_grad for p in tuned.parameters())


def test_tuned_tail_saves_and_loads_over_the_packaged_weights(tmp_path: Path) -> None:
    model = create_backbone()
    _, tail = split_backbone(model, 1)
    with torch.no_grad():
        tail[-2].weight.mul_(1.5)  # the head conv, "tuned"
    path = tmp_path / "backbone.pt"
    state = tail_state_dict(model, 1)
    assert all(k.startswith(("blocks.6.", "conv_head.", "bn2.")) for k in state)
    torch.save(state, path)
    loaded = create_backbone(weights=path)
    x = torch.from_numpy(_batch([draw_watch(3)]))
    with torch.inference_mode():
        assert torch.allclose(loaded.forward_features(x), model.forward_features(x), atol=1e-5)
    assert weights_fingerprint("efficientnet_lite2", path) != weights_fingerprint("efficientnet_lite2")
    assert weights_fingerprint("efficientnet_lite2", "imagenet") == weights_fingerprint("efficientnet_lite2")


def test_one_stage_tuned_on_from_the_packaged_tail_keeps_its_second_last_stage(tmp_path: Path) -> None:
    model = create_backbone(weights="photo")
    _, tail = split_backbone(model, 1)
    with torch.no_grad():
        tail[-2].weight.mul_(1.5)  # the head conv, "tuned" on from the packaged tail
    path = tmp_path / "backbone.pt"
    torch.save(tail_state_dict(model, 1, "photo"), path)
    assert any(k.startswith("blocks.5.") for k in torch.load(path, weights_only=True))
    loaded = create_backbone(weights=path)
    x = torch.from_numpy(_batch([draw_watch(5)]))
    with torch.inference_mode():  # the whole tuned network, not the tuned stage over ImageNet's blocks.5
        assert torch.allclose(loaded.forward_features(x), model.forward_features(x), atol=1e-5)
    assert tuned_stage_count("photo", len(model.blocks)) == 2 and tuned_stage_count("imagenet", 7) == 0


def test_weights_names_resolve_and_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    assert resolve_weights("imagenet") is None and resolve_weights(None) is None
    assert resolve_weights("photo") == PHOTO_TAIL and PHOTO_TAIL.is_file()
    with pytest.raises(BackboneError, match="not found"):
        resolve_weights(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"conv_head.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(BackboneError, match="does not fit"):
        create_backbone(weights=bad)


def test_the_packaged_photo_tail_changes_only_the_last_stages() -> None:
    plain, photo = create_backbone(), create_backbone(weights="photo")
    changed = {k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("blocks") else "")
               for k, v in photo.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, plain.state_dict()[k])}  # fmt: skip
    assert changed <= {"blocks.5", "blocks.6", "conv_head", "bn2"}
    assert "conv_head" in changed
