"""Association loss: which of the window's tracks (or none) each query detection continues.

The network scores a query against every window *detection*, but identity is a property of
tracks: a track seen in five frames of the window has five detections, and the query should be
free to match any of them. So the instance logits of each track are pooled with logsumexp (the
log of the summed probabilities, the same pooling the tracker applies to softmax weights) and
the query is classified over ``[track_1, ..., track_K, no match]``:

* target = the query's own track when that track has a detection in the window;
* target = "no match" when it has none (an animal entering, or reappearing after the window);
* queries of unknown track (-1) are ignored, and window detections of unknown track are not
  candidates (they cannot be attributed to any track).

The "no match" class has one logit shared by all queries. Pass the network's learned scalar
(``GlobalTrackingTransformer.no_match_logit``) so it is trained and saved with the weights; a
plain 0.0 also works and means "a new track when no track's pooled logit exceeds 0".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def track_logits(
    logits: torch.Tensor, window_track_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pool instance logits per window track.

    Args:
        logits: (n_query, n_window) association logits.
        window_track_ids: (n_window,) track of each window detection, -1 where unknown.

    Returns:
        ``(tracks, pooled)``: the K known track ids present in the window (sorted) and
        (n_query, K) logsumexp of each track's instance logits.
    """
    _check_shapes(logits, None, window_track_ids)
    known = window_track_ids >= 0
    tracks = torch.unique(window_track_ids[known])
    member = window_track_ids[None, :] == tracks[:, None]  # (K, n_window)
    masked = logits[:, None, :].masked_fill(~member[None], float("-inf"))
    return tracks, torch.logsumexp(masked, dim=-1)


def association_loss(
    logits: torch.Tensor,
    query_track_ids: torch.Tensor,
    window_track_ids: torch.Tensor,
    no_match_logit: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """Mean cross-entropy over the queries of known track (a 0-dim tensor).

    Args:
        logits: (n_query, n_window) from the network.
        query_track_ids: (n_query,) ground-truth track of each query, -1 where unknown.
        window_track_ids: (n_window,) ground-truth track of each window detection.
        no_match_logit: the "no match" logit (a learned 0-dim parameter, or a number).

    With no query of known track the loss is 0 (still attached to ``logits``, so a backward
    pass works).
    """
    class_logits, targets = _classification(
        logits, query_track_ids, window_track_ids, no_match_logit
    )
    if targets.numel() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(class_logits, targets)


def association_accuracy(
    logits: torch.Tensor,
    query_track_ids: torch.Tensor,
    window_track_ids: torch.Tensor,
    no_match_logit: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """Fraction of queries of known track whose best class (track or no match) is the target.

    Each query is judged on its own (no one-to-one assignment), matching what the loss trains.
    NaN when no query has a known track, so that averaging over batches is not biased by empty
    ones (skip NaN values when aggregating).
    """
    with torch.no_grad():
        class_logits, targets = _classification(
            logits.detach(), query_track_ids, window_track_ids, no_match_logit
        )
        if targets.numel() == 0:
            return torch.tensor(float("nan"), device=logits.device)
        return (class_logits.argmax(dim=1) == targets).float().mean()


def _classification(
    logits: torch.Tensor,
    query_track_ids: torch.Tensor,
    window_track_ids: torch.Tensor,
    no_match_logit: torch.Tensor | float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_valid, K + 1) class logits [tracks..., no match] and (n_valid,) targets."""
    _check_shapes(logits, query_track_ids, window_track_ids)
    tracks, pooled = track_logits(logits, window_track_ids)
    valid = query_track_ids >= 0
    pooled = pooled[valid]
    queries = query_track_ids[valid]
    no_match = torch.as_tensor(no_match_logit, dtype=logits.dtype, device=logits.device)
    if no_match.numel() != 1:
        raise ValueError(f"no_match_logit must be a scalar, got shape {tuple(no_match.shape)}")
    class_logits = torch.cat([pooled, no_match.reshape(1, 1).expand(len(queries), 1)], dim=1)
    rows, cols = torch.nonzero(queries[:, None] == tracks[None, :], as_tuple=True)
    targets = torch.full_like(queries, len(tracks))  # no match unless the track is present
    targets[rows] = cols
    return class_logits, targets


def _check_shapes(
    logits: torch.Tensor, query_track_ids: torch.Tensor | None, window_track_ids: torch.Tensor
) -> None:
    if logits.ndim != 2:
        raise ValueError(f"logits must be (n_query, n_window), got shape {tuple(logits.shape)}")
    if window_track_ids.shape != (logits.shape[1],):
        raise ValueError(
            f"window_track_ids has shape {tuple(window_track_ids.shape)} but logits has "
            f"{logits.shape[1]} window columns"
        )
    if query_track_ids is not None and query_track_ids.shape != (logits.shape[0],):
        raise ValueError(
            f"query_track_ids has shape {tuple(query_track_ids.shape)} but logits has "
            f"{logits.shape[0]} query rows"
        )
