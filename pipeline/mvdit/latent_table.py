"""The ``video_latents`` table: each curated clip's training windows encoded once by the backbone's VAE, so that
MV-DiT training (Sec. 3.2, App. A.2) reads z_0 and z_ref (Eq. 3 / Eq. 9) instead of running the VAE every step.

Fixed windows. A causal 3D VAE's latents depend on where the window starts (latent frame 0 sees frame 0 alone)
and on the crop, so the latents of an arbitrary random window cannot be cut out of one whole-clip encoding.
The table therefore holds a fixed set of windows per clip (`plan_windows`): for every (length, stride) of the
training config (App. A.2: 33 / 49 / 81 / 97 / 129 frames, stride 1 or 2) the clip is tiled from frame 0 by
non-overlapping windows of span (length - 1) * stride + 1. Training then still sees every frame of the clip at
every length and stride it trains on, only starting on that grid instead of anywhere. The alternative, one
longest window per stride, would train on a clip's first 129 (257) frames only and on one length.
Cost of that choice: a clip of T frames has sum over (n, s) of floor(T / span) windows and the VAE encodes about
(5 + 5/2) T frames; at the paper's 600-frame clips that is 70 windows a clip, about twice the windows a
30K-step x 32-sample run draws per clip from 30K clips. It pays back when training draws more than that (more
steps, fewer clips) and on every further run with the same VAE: rows are keyed by the latent map, not the
training run, so ablations (Table 2), sweeps and restarts share them. Trim ``lengths`` / ``strides`` to spend less.

Each window is resized to cover the clip's nearest bucket and centre-cropped (`pipeline.mvdit.windows`), and the
table stores, in bfloat16 bytes with their shapes: the posterior's mean and log-variance (the VAE's posterior is
sampled per step today, as CogVideoX trains; storing both lets each step still draw its own sample; a
deterministic map such as `PoolLatentMap` stores the mean only), the same for the reference latent (frame 0
alone for the 6B, ZeroPad(x_0) for the 18B), and the cropped first frame (uint8; the 18B's CLIP image).
Differences from the per-step path, logged once by the trainer: fixed starts, centre crop (no random crop), no
colour jitter, and a batch's clips share the first drawn clip's bucket (each clip has one bucket here).

Rows are keyed by (clip id, window, bucket, reference kind, latent-map identity: the VAE's class, folder and the
SHA-256 of its config.json, or the pool map's spec), so re-materializing encodes only what is missing (Lance
``merge_insert``); a clip that fails to decode or encode is a recorded rejection, the other clips' rows are kept.
Encoding runs per clip on Ray actors (`pipeline.core.ray_runtime.map_items`; each clip decoded once, straight to its
bucket): one GPU each for a full model's VAE (bf16, tiling and slicing on, as `pipeline.mvdit.latents.VAELatentMap` sets
them), a fraction of a CPU for the tiny models' pool map.

Training (`LatentWindows`): the driver passes the table's uri, version and key; each worker scans the small key
columns for its own clips and reads a step's rows by position (``take``), never the whole table.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import torch

from pipeline.core import tables
from pipeline.core.progress import Log
from pipeline.core.rejects import Reject
from pipeline.mvdit.latents import latent_map_from_spec, vae_folder
from pipeline.mvdit.windows import nearest_bucket, reference_video, resize_crop

VIDEO_LATENTS = "video_latents"
FIRST_FRAME, ZERO_PADDED = "first_frame", "zero_padded"  # the reference latent of the 6B (Eq. 3) / 18B (Eq. 9)

SCHEMA = pa.schema([
    ("id", pa.string()),            # "<clip id>:<first>+<length>x<stride>:<H>x<W>:<reference>:<latent key>"
    ("latent_key", pa.string()),    # `latent_key` of the map that encoded the row
    ("latent_map", pa.string()),    # that map's identity (JSON)
    ("clip_id", pa.string()),       # the motion_video id
    ("uri", pa.string()),
    ("clip_start", pa.int32()),     # the clip's frame range in the video
    ("clip_end", pa.int32()),
    ("first", pa.int32()),          # the window's first frame, relative to clip_start
    ("length", pa.int32()),         # frames in the window (1 + 4k)
    ("stride", pa.int32()),
    ("height", pa.int32()),         # the bucket the window was cropped to
    ("width", pa.int32()),
    ("reference", pa.string()),     # first_frame | zero_padded
    ("shape", pa.list_(pa.int32())),      # (F, C, h, w) of mean / logvar
    ("mean", pa.large_binary()),          # bfloat16 bytes
    ("logvar", pa.large_binary()),        # bfloat16 bytes; null for a deterministic map
    ("ref_shape", pa.list_(pa.int32())),
    ("ref_mean", pa.large_binary()),
    ("ref_logvar", pa.large_binary()),
    ("first_frame", pa.large_binary()),   # uint8 (H, W, 3): the window's cropped frame 0
])
KEY_COLUMNS = ["latent_key", "reference", "uri", "clip_start", "clip_end", "first", "length", "stride", "height",
               "width"]
DATA_COLUMNS = ["shape", "mean", "logvar", "ref_shape", "ref_mean", "ref_logvar", "first_frame", "height", "width"]
FLUSH_BYTES = 256 << 20  # rows buffered on the driver before one upsert (one Lance version)


# ---- identity and windows -------------------------------------------------------------------------
def latent_identity(spec: dict[str, Any]) -> dict[str, Any]:
    """What decides a latent: the pool map's spec, or the VAE's class, folder and config.json SHA-256."""
    if spec.get("kind") != "vae":
        return dict(spec)
    config = vae_folder(spec["folder"]) / "config.json"
    return {"kind": "vae", "class": spec.get("class"), "folder": str(Path(spec["folder"]).resolve()),
            "config_sha256": hashlib.sha256(config.read_bytes()).hexdigest()}


def latent_key(spec: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(latent_identity(spec), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Window:
    first: int  # relative to the clip's first frame
    length: int
    stride: int

    @property
    def span(self) -> int:
        return (self.length - 1) * self.stride + 1


def plan_windows(num_frames: int, lengths: Sequence[int], strides: Sequence[int]) -> list[Window]:
    """For every (length, stride): the clip tiled from frame 0 by non-overlapping windows (see the module text)."""
    out = []
    for length in lengths:
        for stride in strides:
            span = Window(0, length, stride).span
            out += [Window(first, length, stride) for first in range(0, num_frames - span + 1, span)]
    return out


def window_id(clip_id: str, window: Window, bucket: tuple[int, int], reference: str, key: str) -> str:
    return f"{clip_id}:{window.first}+{window.length}x{window.stride}:{bucket[0]}x{bucket[1]}:{reference}:{key}"


def to_bytes(x: torch.Tensor | None) -> bytes | None:
    """A tensor as bfloat16 bytes (numpy has no bfloat16: the bits travel as int16)."""
    return None if x is None else x.detach().to("cpu", torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes()


def from_bytes(data: bytes, shape: Sequence[int]) -> torch.Tensor:
    """bfloat16 bytes -> float32 tensor of ``shape``."""
    bits = torch.from_numpy(np.frombuffer(data, dtype=np.int16).copy())
    return bits.view(torch.bfloat16).float().reshape(tuple(shape))


def encode_window(latent_map, clip: np.ndarray, window: Window, bucket: tuple[int, int],
                  reference: str) -> dict[str, Any]:
    """One window's data columns: the frames cut as `pipeline.mvdit.windows` cuts them (centre crop), then the
    latent map's posterior of the window and of its reference frames."""
    frames = resize_crop(clip[window.first : window.first + window.span : window.stride], bucket, None)
    video = torch.from_numpy(np.ascontiguousarray(frames))[None]
    with torch.no_grad():
        mean, logvar = latent_map.posterior(video)
        ref_mean, ref_logvar = latent_map.posterior(reference_video(video, reference == ZERO_PADDED))
    return {"shape": list(mean.shape[1:]), "mean": to_bytes(mean[0]),
            "logvar": to_bytes(None if logvar is None else logvar[0]), "ref_shape": list(ref_mean.shape[1:]),
            "ref_mean": to_bytes(ref_mean[0]), "ref_logvar": to_bytes(None if ref_logvar is None else ref_logvar[0]),
            "first_frame": np.ascontiguousarray(frames[0]).tobytes()}


# ---- materializing ---------------------------------------------------------------------------------
class ClipDecodeError(RuntimeError):
    """The clip's frames could not be read (a recorded rejection with reason ``decode_failed``)."""


class LatentTask:
    """Ray actor work (`pipeline.core.ray_runtime.ItemTask`): one clip decoded once, its missing windows encoded. The
    latent map loads once per actor: a VAE in bfloat16 on the actor's GPU (tiling and slicing on); on a CPU (tests,
    small VAEs) in float32, as CPUs have no fast bfloat16 3D convolutions; the stored bytes are bfloat16 either way."""

    def __init__(self, spec: dict[str, Any], reference: str):
        self.spec, self.reference = spec, reference

    def setup(self) -> None:
        gpu = torch.cuda.is_available()
        self.latent_map = latent_map_from_spec(self.spec, device="cuda" if gpu else "cpu",
                                               dtype=torch.bfloat16 if gpu else torch.float32)

    def __call__(self, item: dict) -> list[dict]:
        bucket = tuple(item["bucket"])
        clip = self.decode(item["uri"], item["start"], item["end"], bucket)
        rows = []
        for wid, (first, length, stride) in zip(item["ids"], item["windows"]):
            window = Window(first, length, stride)
            rows.append({"id": wid, "latent_key": item["key"], "latent_map": item["identity"],
                         "clip_id": item["clip_id"], "uri": item["uri"], "clip_start": item["start"],
                         "clip_end": item["end"], "first": first, "length": length, "stride": stride,
                         "height": bucket[0], "width": bucket[1], "reference": self.reference,
                         **encode_window(self.latent_map, clip, window, bucket, self.reference)})
        return rows

    @staticmethod
    def decode(uri: str, start: int, end: int, bucket: tuple[int, int]) -> np.ndarray:
        """The clip's frames resized and centre-cropped to ``bucket`` as they stream in (every window of a clip is
        cut from the same bucket, so cropping once is the same as cropping each window, and a long full-HD clip
        is never held at full size); a `ClipDecodeError` when the frames cannot all be read."""
        from pipeline.core.video_io import iter_frames

        try:
            frames = [resize_crop(f[None], bucket, None)[0] for f in iter_frames(uri, start, end)]
            if len(frames) != end - start:
                raise ValueError(f"asked for frames [{start}, {end}) but the video ends at frame {start + len(frames)}")
        except Exception as err:
            raise ClipDecodeError(f"{uri} [{start}, {end}): {type(err).__name__}: {err}") from err
        return np.stack(frames)


def existing_ids(uri: str, key: str) -> set[str]:
    """Ids already encoded with this latent map (the id column only)."""
    if not tables.exists(uri):
        return set()
    return set(tables.read(uri, columns=["id"], filter=f"latent_key = {tables.sql_str(key)}")["id"].to_pylist())


def plan_clips(clips: list[dict], key: str, reference: str, lengths: Sequence[int], strides: Sequence[int],
               buckets: Sequence[tuple[int, int]], done: set[str], identity: str) -> tuple[list[dict], int]:
    """The Ray items (clips with windows still to encode) and the number of windows already encoded.
    ``clips``: dicts with id, uri, start_frame, end_frame, width, height (motion_video's columns)."""
    items, skipped = [], 0
    for clip in clips:
        start, end = int(clip["start_frame"]), int(clip["end_frame"])
        bucket = nearest_bucket(int(clip["height"]), int(clip["width"]), buckets)
        windows = plan_windows(end - start, lengths, strides)
        ids = [window_id(clip["id"], w, bucket, reference, key) for w in windows]
        todo = [(i, w) for i, w in zip(ids, windows) if i not in done]
        skipped += len(ids) - len(todo)
        if todo:
            items.append({"clip_id": clip["id"], "uri": clip["uri"], "start": start, "end": end, "bucket": bucket,
                          "key": key, "identity": identity, "ids": [i for i, _ in todo],
                          "windows": [(w.first, w.length, w.stride) for _, w in todo]})
    items.sort(key=lambda it: -len(it["ids"]))  # longest first: a balanced actor pool (`map_items`)
    return items, skipped


def encode_clips(uri: str, clips: list[dict], spec: dict[str, Any], reference: str, lengths: Sequence[int],
                 strides: Sequence[int], buckets: Sequence[tuple[int, int]], log: Log, ray_address: str = "",
                 gpu: bool = False, flush_bytes: int = FLUSH_BYTES) -> tuple[dict[str, Any], list[Reject]]:
    """Encode every clip's missing windows into the table at ``uri``; returns (summary, rejections).

    Finished clips are upserted in batches of about ``flush_bytes`` as they come back, so a failure later never
    loses rows already written; ``gpu`` asks one GPU per actor (a VAE), else fractional CPUs."""
    from pipeline.core.ray_runtime import map_items

    t0 = time.perf_counter()
    key, identity = latent_key(spec), json.dumps(latent_identity(spec), sort_keys=True)
    items, skipped = plan_clips(clips, key, reference, lengths, strides, buckets, existing_ids(uri, key), identity)
    log(f"video_latents: {len(clips)} clips, {len(items)} to encode, {skipped} windows already encoded "
        f"(latent map {key}: {identity})")
    buffer: list[dict] = []
    pending = added = added_bytes = encoded = 0
    bad: list[Reject] = []

    def flush() -> None:
        nonlocal buffer, pending
        if buffer:
            tables.upsert(uri, pa.Table.from_pylist(buffer, schema=SCHEMA))
            log(f"video_latents: {len(buffer)} windows written ({pending / 2**20:.1f} MiB)")
        buffer, pending = [], 0

    for res in map_items(items, LatentTask(spec, reference), "encode video latents", log, ray_address,
                         gpu=gpu):
        item = res.item
        if res.error:
            reason = "decode_failed" if res.error.startswith(ClipDecodeError.__name__) else "encode_failed"
            bad.append(Reject(VIDEO_LATENTS, item["clip_id"], reason, res.error, uri=item["uri"],
                              start_frame=item["start"], end_frame=item["end"]))
            log(f"video_latents: {item['clip_id']} rejected: {res.error}")
            continue
        size = sum(len(r["mean"]) + len(r["logvar"] or b"") + len(r["ref_mean"]) + len(r["ref_logvar"] or b"")
                   for r in res.value)
        buffer += res.value
        pending += size
        added, added_bytes, encoded = added + len(res.value), added_bytes + size, encoded + 1
        if pending >= flush_bytes:
            flush()
    flush()
    seconds = time.perf_counter() - t0
    summary = {"latent_key": key, "latent_map": json.loads(identity), "reference": reference,
               "clips": len(clips), "clips_encoded": encoded, "clips_rejected": len(bad), "windows_added": added,
               "windows_skipped": skipped, "bytes_added": added_bytes, "seconds": round(seconds, 2),
               "seconds_per_clip": round(seconds / encoded, 3) if encoded else None,
               "lengths": list(lengths), "strides": list(strides)}
    return summary, bad


# ---- training --------------------------------------------------------------------------------------
def table_reference(uri: str, spec: dict[str, Any], reference: str) -> dict[str, Any]:
    """What the driver hands the workers: the table's uri, pinned version, latent key and reference kind; a clear
    error when the table has no rows for this latent map (checked with a count, nothing is read)."""
    key = latent_key(spec)
    rows = tables.count(uri, f"latent_key = {tables.sql_str(key)} AND reference = {tables.sql_str(reference)}")
    if not rows:
        raise FileNotFoundError(f"video_latents = {uri!r} holds no {reference} windows of latent map {key} "
                                f"({latent_identity(spec)}): materialize the video_latents asset first")
    return {"uri": uri, "version": tables.version(uri), "key": key, "reference": reference, "rows": rows}


def sample_posterior(mean: torch.Tensor, logvar: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
    """z = mean + exp(logvar / 2) eps (diffusers' ``DiagonalGaussianDistribution.sample``); the mean when the map
    is deterministic."""
    if logvar is None:
        return mean
    return mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator)


class LatentWindows:
    """One worker's windows in the table: its clips' (length, stride) -> [(row position, first frame)], read at
    the version the driver pinned. ``draw`` replaces draw-then-encode for one training step."""

    def __init__(self, ref: dict[str, Any], samples: list, lengths: Sequence[int], strides: Sequence[int],
                 buckets: Sequence[tuple[int, int]]):
        self.ref = ref
        self.ds = tables.dataset(ref["uri"], ref["version"])
        index = {(str(s.video[0]), int(s.video[1]), int(s.video[2])): i for i, s in enumerate(samples)
                 if not isinstance(s.video, np.ndarray)}
        self.windows: dict[int, dict[tuple[int, int], list[tuple[int, int]]]] = {}
        self.bucket: dict[int, tuple[int, int]] = {}
        keep_lengths, keep_strides, keep_buckets = set(lengths), set(strides), {tuple(b) for b in buckets}
        position = 0
        # Positions of an in-order scan are what ``take`` indexes; only the small key columns are read.
        for batch in self.ds.to_batches(columns=KEY_COLUMNS, scan_in_order=True):
            cols = {name: batch.column(name).to_pylist() for name in KEY_COLUMNS}
            for j in range(batch.num_rows):
                i = index.get((cols["uri"][j], cols["clip_start"][j], cols["clip_end"][j]))
                bucket = (cols["height"][j], cols["width"][j])
                if (i is not None and cols["latent_key"][j] == ref["key"] and cols["reference"][j] == ref["reference"]
                        and cols["length"][j] in keep_lengths and cols["stride"][j] in keep_strides
                        and bucket in keep_buckets):
                    self.windows.setdefault(i, {}).setdefault((cols["length"][j], cols["stride"][j]), []).append(
                        (position + j, cols["first"][j]))
                    self.bucket[i] = bucket
            position += batch.num_rows
        for per_clip in self.windows.values():
            for options in per_clip.values():
                options.sort(key=lambda w: w[1])  # by first frame: draws do not depend on the table's row order
        self.usable = sorted(self.windows)
        self.missing = len(samples) - len(self.usable)
        self.by_bucket: dict[tuple[int, int], list[int]] = {}
        for i in self.usable:
            self.by_bucket.setdefault(self.bucket[i], []).append(i)
        if not self.usable:
            raise ValueError(f"video_latents {ref['uri']} (version {ref['version']}, latent map {ref['key']}) has no "
                             f"windows of this worker's {len(samples)} clips at lengths {sorted(keep_lengths)}, "
                             f"strides {sorted(keep_strides)}, buckets {sorted(keep_buckets)}")

    def describe(self) -> str:
        count = sum(len(v) for per in self.windows.values() for v in per.values())
        text = (f"video_latents: {count} fixed windows of {len(self.usable)} clips from {self.ref['uri']} "
                f"(version {self.ref['version']}); on this path windows start on a fixed grid, are centre-cropped, "
                f"and get no random crop and no colour jitter (the VAE never runs during training)")
        if self.missing:
            text += f"; {self.missing} clips have no encoded windows and are not trained on"
        return text

    def read(self, positions: list[int]) -> dict[str, Any]:
        """The data columns of these rows, decoded: mean / logvar / ref_mean / ref_logvar (B, ...) float32 (logvars
        None for a deterministic map) and first frames uint8 (B, H, W, 3)."""
        unique = sorted(set(positions))
        by_position = dict(zip(unique, self.ds.take(unique, columns=DATA_COLUMNS).to_pylist()))
        rows = [by_position[p] for p in positions]

        def stack(name: str, shape: str):
            if rows[0][name] is None:
                return None
            return torch.stack([from_bytes(r[name], r[shape]) for r in rows])

        frames = np.stack([np.frombuffer(r["first_frame"], np.uint8).reshape(r["height"], r["width"], 3) for r in rows])
        return {"mean": stack("mean", "shape"), "logvar": stack("logvar", "shape"),
                "ref_mean": stack("ref_mean", "ref_shape"), "ref_logvar": stack("ref_logvar", "ref_shape"),
                "first_frame": frames}

    def draw(self, samples: list, batch_size: int, prompt: str, rng: np.random.Generator, generator: torch.Generator,
             device: torch.device) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, list[str], np.ndarray]:
        """One step: (latents, reference latents, joints (B, L, 24, 3), texts, first frames (B, H, W, 3) uint8).

        The first clip is drawn among all, the others among the clips of its bucket; one (length, stride) among
        those every drawn clip has; one window of it per clip; each latent sampled from its stored posterior."""
        first = self.usable[int(rng.integers(0, len(self.usable)))]
        group = self.by_bucket[self.bucket[first]]
        picks = [first] + [group[int(j)] for j in rng.integers(0, len(group), batch_size - 1)]
        options = sorted(set.intersection(*(set(self.windows[i]) for i in picks)))
        if not options:
            raise ValueError(f"the drawn clips {picks} share no window length / stride in the video_latents table")
        length, stride = options[int(rng.integers(0, len(options)))]
        chosen = [self.windows[i][(length, stride)][int(rng.integers(0, len(self.windows[i][(length, stride)])))]
                  for i in picks]
        rows = self.read([position for position, _ in chosen])
        latents = sample_posterior(rows["mean"], rows["logvar"], generator).to(device)
        reference = sample_posterior(rows["ref_mean"], rows["ref_logvar"], generator).to(device)
        span = Window(0, length, stride).span
        joints = np.stack([samples[i].joints[f : f + span : stride] for i, (_, f) in zip(picks, chosen)])
        texts = [samples[i].caption if samples[i].caption is not None else prompt for i in picks]
        return latents, reference, joints, texts, rows["first_frame"]
