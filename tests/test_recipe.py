"""The training recipe: chosen for the corpus size and the time when no option is given."""

import json

from musicseq import recipe
from musicseq.cli import _given_options
from musicseq.config import ModelConfig, TrainConfig
from tests.conftest import run_cli


def test_the_recipe_grows_with_the_data_and_shrinks_with_the_time():
    small, large, huge = (recipe.choose(n, 30) for n in (180_000, 1_200_000, 5_000_000))
    assert [r.model["units"] for r in (small, large, huge)] == [192, 256, 384]
    assert small.model["dropout"] > large.model["dropout"]
    # Transpositions for a small corpus only (on the default corpus they made the model worse).
    assert small.train["transpose"] > large.train["transpose"] == huge.train["transpose"] == 0
    assert all(r.model["metrical"] and r.train["early_stopping"] for r in (small, large, huge))
    assert recipe.choose(180_000, 5).model["units"] == 128
    assert "small corpus" in small.reasons[0] and "Transformer 192 wide" in small.describe()


def test_any_model_or_optimiser_option_turns_the_recipe_off(data_dir):
    data = data_dir / "irish.abc"
    model, train = ModelConfig(), TrainConfig(minutes=30)
    given = _given_options(["train", "--data", str(data), "--minutes", "30", "--out", "x"])
    assert given == {"data", "minutes", "out"}
    chosen = recipe.apply(data, model, train, given)
    assert chosen is not None and chosen[0].kind == "transformer" and chosen[1].transpose == 3
    for extra in (["--model", "lstm"], ["--dropout", "0"], ["--no-clip"], ["--batch-size", "8"]):
        given = _given_options(["train", "--minutes", "30", "--out", "x", *extra])
        assert recipe.apply(data, model, train, given) is None, extra
    assert recipe.apply(data, model, TrainConfig(steps=10), {"out"}) is None  # not a time budget


def test_train_with_only_data_and_minutes_uses_and_records_the_recipe(data_dir, tmp_path):
    out = tmp_path / "mine"
    done = run_cli(
        "train", "--data", str(data_dir / "irish.abc"), "--minutes", "0.05", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "recipe: Transformer" in done.stdout and "because" in done.stdout
    saved = json.loads((out / "musicseq.json").read_text())
    assert saved["model"]["metrical"] and saved["train"]["transpose"] == 3
    assert saved["train"]["early_stopping"] == 3 and saved["train"]["lr_schedule"] == "cosine"
