"""How fast chapter 8's in-browser VAE runs: decode and encode latency in Chromium.

    python benchmarks/explorer_latency.py            # times the built book's page
    python benchmarks/explorer_latency.py --runs 200 --page PATH.html

Opens chapter 8 of the built book (the full build if there is one, else the fast
one) from disk in headless Debian Chromium, and times, with performance.now() in
the page, the explorer's own calls: one decode (a code to 784 pixels), one redraw
(decode, paint the digit, redraw the plane: what a marker move costs) and one
encode (an image to the posterior's mean and log-variance). Each is run `--runs`
times after a warm-up; medians go to results/explorer/latency.json, which chapter 8
quotes. Targets: a decode within a frame at 60 Hz (16 ms), an encode within 100 ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = "chapters/08_latent_space.html"
BUILDS = [ROOT / "_build" / mode / "_build" / "html" for mode in ("full", "fast")]
OUTPUT = ROOT / "results" / "explorer" / "latency.json"
CHROMIUM = "/usr/bin/chromium"
TARGETS_MS = {"decode": 16.0, "encode": 100.0}
WARMUP = 10

# Runs in the page: times `runs` calls of each operation on varied inputs.
TIMING_JS = """
({runs, warmup}) => {
  const explorer = window.VAE_EXPLORER;
  const model = explorer.model;
  const data = window.VAE_EXPLORER_DATA;
  const pixels = VaeExplorer.bytesFromBase64(data.examples.images);
  const count = data.examples.labels.length;
  const images = [];
  for (let i = 0; i < count; i++) {
    const image = pixels.subarray(i * 784, (i + 1) * 784);
    images.push(Float32Array.from(image, v => v / 255));
  }
  const code = i => [3 * Math.sin(i * 0.7), 3 * Math.cos(i * 1.3)];
  const time = (operation) => {
    for (let i = 0; i < warmup; i++) operation(i);
    const ms = [];
    for (let i = 0; i < runs; i++) {
      const start = performance.now();
      operation(i);
      ms.push(performance.now() - start);
    }
    return ms;
  };
  const result = {
    decode: time(i => model.decode(code(i))),
    redraw: time(i => explorer.setZ(...code(i))),
    encode: time(i => model.encode(images[i % count])),
  };
  explorer.setZ(0, 0);
  return result;
}
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=int, default=100, help="timed calls of each (>= 50)"
    )
    parser.add_argument(
        "--page", type=Path, help=f"the page to time (default: {PAGE} of a build)"
    )
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    if args.runs < 50:
        parser.error(f"--runs must be at least 50 (a median of >= 50), got {args.runs}")
    if args.page is None:
        found = [build / PAGE for build in BUILDS if (build / PAGE).is_file()]
        if not found:
            parser.error(
                "no built chapter 8: run `make book-fast` or `make book` first"
            )
        args.page = found[0]
    elif not args.page.is_file():
        parser.error(f"--page {args.page}: no such file")
    if not Path(CHROMIUM).is_file():
        parser.error(f"{CHROMIUM} not found: run `bash scripts/install_browser.sh`")
    return args


def summary(ms: list[float]) -> dict:
    ordered = sorted(ms)
    return {
        "median": round(statistics.median(ordered), 3),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
        "min": round(ordered[0], 3),
        "runs": len(ordered),
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(page_path: Path, runs: int) -> dict:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        context = browser.new_context()
        context.route(lambda url: not url.startswith("file:"), lambda r: r.abort())
        page = context.new_page()
        page.goto(page_path.resolve().as_uri(), wait_until="load")
        page.wait_for_function("window.VAE_EXPLORER !== undefined", timeout=60_000)
        timings = page.evaluate(TIMING_JS, {"runs": runs, "warmup": WARMUP})
        version = browser.version
        browser.close()
    return {"browser": f"Chromium {version} (headless)", "timings": timings}


def write_json(data: dict, path: Path) -> None:
    """Strict JSON, written to a temporary file and renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    args = parse_args(argv)
    measured = measure(args.page, args.runs)
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "page": str(args.page.resolve().relative_to(ROOT))
        if args.page.resolve().is_relative_to(ROOT)
        else str(args.page),
        "browser": measured["browser"],
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        # Other work on the machine slows the page: quote the load with the times.
        "load_average_1min": round(os.getloadavg()[0], 2),
        "targets_ms": TARGETS_MS,
        **{f"{name}_ms": summary(ms) for name, ms in measured["timings"].items()},
    }
    write_json(result, args.output)
    for name in ("decode", "redraw", "encode"):
        row = result[f"{name}_ms"]
        line = f"{name:7s} median {row['median']:7.2f} ms  p90 {row['p90']:7.2f} ms"
        if name in TARGETS_MS:
            met = row["median"] <= TARGETS_MS[name]
            line += (
                f"  (target <= {TARGETS_MS[name]:g} ms: {'met' if met else 'MISSED'})"
            )
        print(line)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
