"""Write ``docs/_static/figure1.png``, the picture in the README: the gallery's first figure.

Run from the repository root: ``python docs/make_readme_figure.py``. The figure is made by the
gallery example ``docs/examples/plot_01_figure1.py`` itself, so the README shows exactly what the
documentation builds.
"""

from __future__ import annotations

import io
import runpy
import warnings
from pathlib import Path

import matplotlib
from PIL import Image

matplotlib.use("Agg")

HERE = Path(__file__).resolve().parent
OUT = HERE / "_static" / "figure1.png"


def main() -> None:
    with warnings.catch_warnings():
        # the example ends with plt.show(), which the Agg backend can only decline
        warnings.filterwarnings("ignore", message=".*non-interactive.*", category=UserWarning)
        namespace = runpy.run_path(str(HERE / "examples" / "plot_01_figure1.py"))
    fig = namespace["fig"]
    fig.set_size_inches(12, 5)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    # a 256-colour palette keeps the noisy covariance panels well under the README's 300 KB
    Image.open(buffer).convert("RGB").quantize(colors=256).save(OUT, optimize=True)
    print(f"wrote {OUT.relative_to(HERE.parent)} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
