import math

from musicseq.ngram import BOUNDARY, KneserNey


def test_probabilities_sum_to_one_and_higher_orders_fit_better(data_dir):
    from musicseq.notation import parse_tunebook

    tunes = [t.text for t in parse_tunebook((data_dir / "irish.abc").read_text()).tunes]
    train, test = tunes[:700], tunes[700:]
    model = KneserNey(5).fit(train)
    for context in ("K:D\n", "|:AB", "zz"):
        total = sum(model.prob(context, c) for c in model.vocab)
        assert 0.99 < total <= 1.0 + 1e-9
    assert BOUNDARY in model.vocab
    scores = {n: KneserNey(n).fit(train).nats_per_char(test) for n in (1, 3, 5)}
    assert scores[5] < scores[3] < scores[1] < math.log(len(model.vocab) + 1)
