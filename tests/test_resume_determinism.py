"""What a resumed training run must share with an uninterrupted one, checked without training.

Two causes of divergence were found by killing the workflow mid-training
(tests/test_kill_rerun.py): the resume fingerprint changed between processes (symmetry node
order), so the rerun started from scratch, and the augmentation generator was reseeded on
resume, so the resumed epochs saw other augmentations.
"""

from __future__ import annotations

import sleap_io as sio
import torch
from helpers import tiny_model_config

from pipeline_lib.io.skeleton import skeleton_from_dict, skeleton_to_dict
from pipeline_lib.training.module import AUGMENTATION_RNG_KEY, PoseModule


def _skeleton() -> sio.Skeleton:
    return sio.Skeleton(
        nodes=["nose", "ear_left", "ear_right", "tail"],
        edges=[("nose", "tail")],
        symmetries=[("ear_right", "ear_left")],
    )


def test_serialised_skeleton_does_not_depend_on_set_order():
    """sleap-io holds a symmetry in a set ordered by object ids; 40 fresh skeletons give both
    orders there, and must all serialise to the same dict (the training fingerprint hashes it)."""
    dicts = [skeleton_to_dict(_skeleton()) for _ in range(40)]
    assert all(d == dicts[0] for d in dicts)
    assert dicts[0]["symmetries"] == [["ear_left", "ear_right"]]  # skeleton node order
    back = skeleton_from_dict(dicts[0])
    assert [{n.name for n in s.nodes} for s in back.symmetries] == [{"ear_left", "ear_right"}]


def _module() -> PoseModule:
    return PoseModule(
        model_config=tiny_model_config(part_names=["a", "b"], stride=2),
        head="single_instance",
        n_nodes=2,
        in_channels=1,
        augmentation={"intensity": {"brightness_p": 1.0}},
        optimizer={"name": "Adam", "lr": 1e-3, "amsgrad": False},
        lr_scheduler={},
        ohkm=None,
        seed=7,
    )


def test_augmentation_generator_continues_after_resume():
    """The draws after a checkpoint are the same whether the run went on or was restored from
    that checkpoint in a new module (as Lightning does on resume)."""
    cpu = torch.device("cpu")
    running = _module()
    before = torch.rand(5, generator=running._generator_for(cpu))
    checkpoint: dict = {}
    running.on_save_checkpoint(checkpoint)
    assert AUGMENTATION_RNG_KEY in checkpoint
    uninterrupted = torch.rand(5, generator=running._generator_for(cpu))

    resumed = _module()
    resumed.on_load_checkpoint(checkpoint)
    after_resume = torch.rand(5, generator=resumed._generator_for(cpu))
    assert torch.equal(after_resume, uninterrupted)
    assert not torch.equal(after_resume, before)


def test_checkpoint_without_generator_state_reseeds():
    """Checkpoints written before the state was saved still resume (seeded as before)."""
    cpu = torch.device("cpu")
    module = _module()
    module.on_load_checkpoint({})
    fresh = torch.rand(3, generator=_module()._generator_for(cpu))
    assert torch.equal(torch.rand(3, generator=module._generator_for(cpu)), fresh)
