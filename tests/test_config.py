import pytest

from asr.config import Config, ConfigError, load_config


def test_defaults_and_layers(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("model:\n  hidden_size: 64\n  num_layers: 2\ntrain:\n  lr: 1\n")
    b = tmp_path / "b.yaml"
    b.write_text("model:\n  num_layers: 4\n")
    cfg = load_config([a, b], ["train.epochs=7", "model.rnn_type=gru", "features.kind=linear"])
    assert cfg.model.hidden_size == 64
    assert cfg.model.num_layers == 4  # the later file wins
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)  # ints are accepted as floats
    assert cfg.train.epochs == 7
    assert cfg.model.rnn_type == "gru"
    assert cfg.features.kind == "linear"
    assert cfg.data.batch_seconds == Config().data.batch_seconds
    # YAML 1.1 reads 5e-4 (no dot) as a string: a number field still takes it, in files too
    a.write_text("train:\n  weight_decay: 1e-3\n")
    cfg = load_config([a], ["train.lr=5e-4"])
    assert cfg.train.lr == 5e-4 and cfg.train.weight_decay == 1e-3


@pytest.mark.parametrize(
    "override, words",
    [
        ("model.num_layer=4", "unknown key 'model.num_layer'"),
        ("modle.num_layers=4", "unknown key 'modle'"),
        ("model.num_layers=four", "model.num_layers must be an integer"),
        ("model.rnn_type=transformer", "is not one of"),
        ("train.sortagrad=maybe", "train.sortagrad must be true or false"),
        ("train.precision=int4", "train.precision='int4' is not one of"),
        ("train.lr=fast", "train.lr must be a number"),
        ("train.lr", "not of the form key=value"),
        ("model=3", "model must be a mapping"),
    ],
)
def test_bad_overrides_name_the_key(override, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.").replace("(", r"\(")):
        load_config([], [override])


def test_bad_yaml_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  hidden_size: 12\n  colour: red\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'model\.colour'"):
        load_config([bad])
    with pytest.raises(ConfigError, match="not found"):
        load_config([tmp_path / "missing.yaml"])


def test_defaults_are_not_shared():
    a, b = Config(), Config()
    a.model.hidden_size = 1
    assert b.model.hidden_size != 1


def test_shipped_configs_load():
    from asr.config import load_decoder_config
    from tests.conftest import ROOT

    for path in sorted((ROOT / "conf").rglob("*.yaml")) + sorted(
        (ROOT / "recipes").rglob("*.yaml")
    ):
        if path.name == "decoder.yaml":  # a decoder config: its own schema
            load_decoder_config(path)
        else:
            load_config([path])
    load_decoder_config(ROOT / "asr/pretrained/decoder.yaml")
