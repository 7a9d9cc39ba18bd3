"""Identity "tracking" for multi-class models, whose predictions already carry a track.

Multi-class models (class maps or class vectors) assign every instance to one of the animals
they were trained on, so there is nothing to link across frames. This tracker keeps those
identities, checks that each frame uses a track at most once, and leaves instances without a
track untracked, so the tracking stage and its outputs stay the same for every model type.
"""

from __future__ import annotations

import sleap_io as sio


class IdentityTracker:
    """Keeps the tracks a multi-class model assigned; same interface as the other trackers."""

    def track(self, labels: sio.Labels) -> sio.Labels:
        """A new Labels with the same instances and tracks (input not mutated)."""
        frames = []
        tracks: dict[str, sio.Track] = {}
        for lf in labels.labeled_frames:
            seen: set[str] = set()
            instances = []
            for inst in lf.instances:
                track = None
                if inst.track is not None:
                    if inst.track.name in seen:
                        raise ValueError(
                            f"Frame {lf.frame_idx} of {lf.video.filename} has two instances of "
                            f"track '{inst.track.name}'; identities must be unique per frame"
                        )
                    seen.add(inst.track.name)
                    track = tracks.setdefault(inst.track.name, sio.Track(name=inst.track.name))
                if isinstance(inst, sio.PredictedInstance):
                    instances.append(
                        sio.PredictedInstance.from_numpy(
                            inst.numpy(),
                            skeleton=inst.skeleton,
                            point_scores=inst.numpy(scores=True)[:, 2],
                            score=inst.score,
                            track=track,
                            tracking_score=inst.tracking_score if track is not None else None,
                        )
                    )
                else:
                    instances.append(
                        sio.Instance.from_numpy(inst.numpy(), skeleton=inst.skeleton, track=track)
                    )
            frames.append(
                sio.LabeledFrame(video=lf.video, frame_idx=lf.frame_idx, instances=instances)
            )
        return sio.Labels(
            labeled_frames=frames,
            videos=labels.videos,
            skeletons=labels.skeletons,
            tracks=list(tracks.values()),
        )
