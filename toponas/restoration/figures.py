"""Side-by-side pictures of test images (degraded, restored, clean): what ``report`` shows of a restoration run."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

EXAMPLES_DIR = "examples"
GAP = 6


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(C, H, W)`` in ``[0, 1]`` to ``(H, W)`` or ``(H, W, 3)`` uint8."""
    a = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return a[..., 0] if a.shape[-1] == 1 else a


def side_by_side(degraded: torch.Tensor, restored: torch.Tensor, clean: torch.Tensor) -> Image.Image:
    """One picture: the degraded input (enlarged by pixel repetition to the clean size), the restored, the clean."""
    scale = clean.shape[-1] // degraded.shape[-1]
    if scale > 1:
        degraded = degraded.repeat_interleave(scale, -1).repeat_interleave(scale, -2)
    panels = [to_uint8(t[:, :clean.shape[-2], :clean.shape[-1]]) for t in (degraded, restored, clean)]
    h, w = panels[0].shape[:2]
    shape = (h, 3 * w + 2 * GAP) + panels[0].shape[2:]
    canvas = np.full(shape, 255, np.uint8)
    for i, p in enumerate(panels):
        canvas[:, i * (w + GAP): i * (w + GAP) + w] = p
    return Image.fromarray(canvas)


def save_examples(examples: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], names: Sequence[str],
                  run: Path) -> list[str]:
    """``RUN/examples/<image>.png`` per example; the file names written."""
    folder = Path(run) / EXAMPLES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for (degraded, restored, clean), name in zip(examples, names):
        path = folder / f"{name}.png"
        side_by_side(degraded, restored, clean).save(path)
        written.append(path.name)
    return written


def report_lines(run: Path, result: dict, out: Path) -> list[str]:
    """The restoration section of a report page: PSNR/SSIM per test image and the saved pictures (copied to ``out``)."""
    if result.get("psnr") is None:
        return []
    r = result.get("restoration") or {}
    what = (f"denoising, sigma {r.get('sigma')}" if r.get("kind") == "denoise"
            else f"super-resolution x{r.get('scale')}")
    lines = ["## Restoration", "", f"{what}; PSNR and SSIM on {r.get('metric', 'the test images')}: "
             f"**{result['psnr']:.2f} dB**, SSIM **{result['ssim']:.4f}** (mean over the test images).", "",
             "| test image | PSNR (dB) | SSIM |", "| --- | --- | --- |"]
    lines += [f"| {s['image']} | {s['psnr']:.2f} | {s['ssim']:.4f} |" for s in result.get("test_scores", [])]
    lines.append("")
    folder = Path(run) / EXAMPLES_DIR
    pictures = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if pictures:
        lines += ["Left to right: degraded input, restored, clean.", ""]
        target = Path(out) / EXAMPLES_DIR
        target.mkdir(parents=True, exist_ok=True)
        for p in pictures:
            (target / p.name).write_bytes(p.read_bytes())
            lines.append(f"![{p.stem}]({EXAMPLES_DIR}/{p.name})\n")
    return lines


__all__ = ["save_examples", "side_by_side", "report_lines", "EXAMPLES_DIR"]
