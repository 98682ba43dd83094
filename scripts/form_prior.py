"""Write musicseq/notation/form_prior.json: the forms a meter's tunes take in the corpus.

    python scripts/form_prior.py [data/abc/train.abc] [--summary]

Generation draws a form from it for ``--form auto`` (via ``musicseq.notation.form.form_prior``).
Form keys are "label/bars per part" ("AABB/8", "AAB/4+8") or "free"; see TuneForm.form_key.
With ``--summary`` the split's population figures are printed too.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from musicseq.corpus import read_tunebook
from musicseq.notation.form import PRIOR_FILE, analyze, form_distribution, summarize

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tunebook", nargs="?", default=str(ROOT / "data/abc/train.abc"))
    parser.add_argument("--out", default=str(PRIOR_FILE))
    parser.add_argument("--summary", action="store_true", help="print the population figures")
    args = parser.parse_args()

    source = Path(args.tunebook)
    forms = [analyze(tune) for tune in read_tunebook(source).tunes]
    valid = [f for f in forms if f.valid]
    meters = Counter(f.meter for f in valid)
    prior = {
        "source": source.resolve().relative_to(ROOT).as_posix()
        if source.resolve().is_relative_to(ROOT)
        else source.name,
        "tunes": len(valid),
        "tunes_per_meter": dict(meters.most_common()),
        "forms": {
            meter: {key: round(p, 5) for key, p in shares.items()}
            for meter, shares in form_distribution(valid).items()
        },
    }
    Path(args.out).write_text(json.dumps(prior, indent=1) + "\n")
    print(f"{args.out}: {len(valid)} tunes, {len(meters)} meters")
    for meter, shares in list(prior["forms"].items())[:6]:
        top = ", ".join(f"{k} {p:.0%}" for k, p in list(shares.items())[:4])
        print(f"  {meter:>5} ({meters[meter]} tunes): {top}")
    if args.summary:
        print(json.dumps(summarize(forms), indent=1))


if __name__ == "__main__":
    main()
