from musicseq import api, render


def test_tune_html_has_audio_when_it_renders(data_dir):
    tunes = api.load_tunes(data_dir / "three.abc")
    assert [t.title for t in tunes] == ["The Kesh", "Drowsy Maggie", "Si Bheag Si Mhor"]
    page = tunes[2]._repr_html_()
    assert "<audio controls" in page and "data:audio/wav;base64," in page
    assert "Si Bheag Si Mhor" in page and "K:D" in page
    table = tunes._repr_html_()
    assert table.count("<tr>") == 4 and "Drowsy Maggie" in table


def test_tune_html_degrades_to_text_when_it_cannot_render(monkeypatch):
    tune = api.Tune("X:1\nT:Broken\nM:4/4\nK:G\n")  # no music: nothing to render
    page = tune._repr_html_()
    assert "<audio" not in page and "could not be rendered" in page and "T:Broken" in page


def test_tune_files_and_piano_roll(tmp_path, data_dir):
    tune = api.load_tunes(data_dir / "three.abc")[0]
    midi = tune.to_midi(tmp_path / "kesh.mid")
    assert render.midi_info(midi).notes > 40
    wav = tune.to_wav(tmp_path / "kesh.wav", sample_rate=16000, mono=True)
    audio, rate = render.read_wav(wav)
    assert rate == 16000 and audio.shape[1] == 1
    figure = tune.piano_roll()
    assert figure.axes and figure.axes[0].get_title() == "The Kesh"


def test_generate_returns_a_tune_set(tiny_model_dir, tmp_path):
    loaded = api.load_model(tiny_model_dir)
    tunes = api.generate(loaded, num=2, max_len=150, seed=2, constrain=True)
    assert isinstance(tunes, api.TuneSet) and len(tunes) == 2
    assert all(t.check().headers_ok for t in tunes)
    results = tunes.render_all(tmp_path / "out", wav=False)
    assert all(r.midi is not None for r in results), [r.error for r in results]


def test_tunes_know_their_form(data_dir):
    tunes = api.load_tunes(data_dir / "three.abc")
    forms = [t.form() for t in tunes]
    assert all(f.valid for f in forms)
    assert "form (bars per part)" in tunes._repr_html_()
    summary = tunes.form_summary()
    assert summary["tunes"] == 3 and 0 <= summary["ends_on_tonic"] <= 1
    rows = tunes.form_summary(reference=[t.text for t in tunes])
    assert all(abs(distance) < 1e-9 for _, _, _, distance in rows if distance is not None)
