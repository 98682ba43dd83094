import json

import numpy as np

from musicseq.cli import main
from musicseq.visualize import char_features, rank_units

TUNE = 'X:1\nT:t\nM:4/4\nL:1/8\nK:G\n|:"G"ABcd efga|"D"B2c2 d4:|\n|:g2fe dcBA|G8:|\n'


def test_a_unit_that_tracks_bar_position_is_ranked_first():
    features = char_features(TUNE)
    rng = np.random.default_rng(0)
    activations = rng.normal(size=(len(TUNE), 20))
    activations[:, 7] = features["bar_position"]  # the hand-made unit
    ranked = rank_units(activations, features)
    best = ranked["bar_position"][0]
    assert best["unit"] == 7 and abs(best["r"] - 1.0) < 1e-9


def test_char_features():
    features = char_features(TUNE)
    assert all(len(v) == len(TUNE) for v in features.values())
    i = TUNE.index('"G"') + 1
    assert features["in_quotes"][i] == 1 and features["in_quotes"][TUNE.index("ABcd")] == 0
    assert features["in_repeat"][TUNE.index("efga")] == 1
    assert features["to_line_end"][TUNE.index("X:1") + 2] == 1
    assert features["bar_position"][TUNE.index("efga")] == 0.5


def test_inspect_writes_units_json_and_pictures(tiny_model_dir, data_dir, tmp_path):
    out = tmp_path / "inspect"
    assert (
        main(
            [
                "inspect",
                str(tiny_model_dir),
                "--tune",
                str(data_dir / "three.abc"),
                "--out",
                str(out),
                "--top",
                "1",
            ]
        )
        == 0
    )
    units = json.loads((out / "units.json").read_text())
    assert set(units["ranking"]) == {"bar_position", "in_quotes", "in_repeat", "to_line_end"}
    for entries in units["ranking"].values():
        assert all(-1 <= e["r"] <= 1 for e in entries)
    assert len(list(out.glob("*.png"))) == 4 and (out / "units.html").is_file()


def test_transformer_attention_maps(tmp_path, data_dir):
    from musicseq.config import ModelConfig, TrainConfig
    from musicseq.train import train

    model_dir = tmp_path / "tf"
    train(
        data_dir / "three.abc",
        model_dir,
        ModelConfig(
            kind="transformer", units=16, num_layers=2, num_heads=2, context=64, vocab_size=1
        ),
        TrainConfig(batch_size=4, steps=2, seed=0, tensorboard=False),
        log=lambda _m: None,
        verbose=0,
    )
    out = tmp_path / "att"
    assert (
        main(["inspect", str(model_dir), "--tune", str(data_dir / "three.abc"), "--out", str(out)])
        == 0
    )
    result = json.loads((out / "attention.json").read_text())
    assert len(result["heads"]) == 4 and {"previous_bar_line", "one_bar_back"} <= set(
        result["heads"][0]
    )
    assert (out / "attention_layer0.png").is_file() and (out / "attention_layer1.png").is_file()
