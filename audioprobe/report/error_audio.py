"""Error analysis you can hear: the highest-loss test clips of a dataset, each with a small
spectrogram and an audio player, within a size budget."""

from __future__ import annotations

import base64
import html
import io
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import soundfile as sf

from audioprobe.errors import AudioError

RATE = 8000  # the players' sample rate: speech stays intelligible
SECONDS = 4.0  # the longest excerpt played
BUDGET = 3_000_000  # bytes of embedded audio and images in the whole report


def clips_per_dataset(asked: int, n_datasets: int) -> int:
    """How many clips each dataset may show within ``BUDGET``."""
    per_clip = 4 / 3 * (RATE * SECONDS * 2 + 44) + 15_000  # base64 WAV and its spectrogram
    return max(0, min(asked, int(BUDGET // (per_clip * max(n_datasets, 1)))))


def best_case(summary: pd.DataFrame, dataset: str) -> tuple[str, str]:
    """The model and probe of ``dataset`` with the highest headline mean (whose errors are
    heard)."""
    rows = summary[summary["dataset"] == dataset]
    metric = rows["headline_metric"].iloc[0]
    best = rows.sort_values(f"{metric}_mean", ascending=False).iloc[0]
    return best["model"], best["probe"]


def worst_clips(predictions: pd.DataFrame, count: int) -> pd.DataFrame:
    """The ``count`` test clips with the highest loss, averaged over the rounds and seeds that
    tested them: clip_id, label, the most frequent prediction and the mean loss."""
    per_clip = predictions.groupby("clip_id").agg(
        label=("label", "first"), prediction=("prediction", lambda p: p.mode().iloc[0]),
        loss=("loss", "mean"))
    return per_clip.sort_values("loss", ascending=False).head(count).reset_index()


def excerpt(path: str, start: float, end: float) -> np.ndarray:
    """At most ``SECONDS`` of a clip, mono, at ``RATE`` (decoded as the extraction decodes)."""
    import torchaudio.functional as AF  # torch only where clips are heard (off by default)

    from audioprobe.features.audio import decode, probe

    rate, first, last = probe(path, start, end, longest=math.inf)
    wave, rate = decode(path, first, min(last, first + int(SECONDS * rate)))
    return AF.resample(wave, rate, RATE).numpy() if rate != RATE else wave.numpy()


def player(wave: np.ndarray) -> str:
    """An HTML audio element with the excerpt embedded as 16-bit WAV."""
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(wave, -1, 1), RATE, format="WAV", subtype="PCM_16")
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<audio controls preload="none" src="data:audio/wav;base64,{data}"></audio>'


def spectrogram(wave: np.ndarray) -> str:
    """A small log-magnitude spectrogram as an embedded PNG."""
    import torch

    fig, ax = plt.subplots(figsize=(2.4, 0.9))
    spec = torch.stft(torch.from_numpy(wave), 256, 128, window=torch.hann_window(256),
                      return_complex=True).abs()
    ax.imshow(20 * np.log10(spec.numpy() + 1e-6), origin="lower", aspect="auto", cmap="magma")
    ax.set_axis_off()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=60, bbox_inches="tight", pad_inches=0)
    plt.close(fig)
    return (f'<img alt="spectrogram" src="data:image/png;base64,'
            f'{base64.b64encode(buffer.getvalue()).decode()}">')


def rows_html(worst: pd.DataFrame, manifest: pd.DataFrame) -> str:
    """A table of the clips: id, label, prediction, loss, spectrogram and player."""
    where = manifest.set_index("clip_id")
    rows = []
    for clip in worst.itertuples():
        source = where.loc[clip.clip_id]
        try:
            wave = excerpt(str(source["path"]), float(source["start"]), float(source["end"]))
            media = spectrogram(wave) + "<br>" + player(wave)
        except (AudioError, OSError) as error:
            media = f"audio not available: {html.escape(str(error))}"
        rows.append(f"<tr><td>{html.escape(str(clip.clip_id))}</td>"
                    f"<td>{html.escape(str(clip.label))}</td>"
                    f"<td>{html.escape(str(clip.prediction))}</td><td>{clip.loss:.2f}</td>"
                    f"<td>{media}</td></tr>")
    return ('<div class="table-wrap"><table class="dataframe"><thead><tr><th>clip</th>'
            "<th>label</th><th>predicted</th><th>loss</th><th>listen</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>")
