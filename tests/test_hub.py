"""The Hub source's code path, run on a local dataset folder (the Hub is unreachable here).

load_dataset(name) accepts a folder of data files in place of a Hub id, so
this is the same call, streaming and max_docs included, that fetches
roneneldan/TinyStories when the network is there.
"""
import json

import pytest

from testbed import TestbedError
from testbed.config import DataConfig
from testbed.corpus.sources import load_documents, source_name


@pytest.fixture
def dataset_folder(tmp_path):
    folder = tmp_path / "my-stories"
    (folder / "data").mkdir(parents=True)
    with open(folder / "data" / "train.jsonl", "w") as f:
        for i in range(50):
            f.write(json.dumps({"story": f"Story number {i} is short.", "id": i}) + "\n")
    return folder


def test_hub_path_streams_and_stops_at_max_docs(dataset_folder):
    data = DataConfig(source="hub", name=str(dataset_folder), split="train", text_field="story", max_docs=7)
    docs = load_documents(data, seed=0)
    assert docs == [f"Story number {i} is short." for i in range(7)]
    assert source_name(data) == f"hub:{dataset_folder}"


def test_hub_path_names_a_missing_column(dataset_folder):
    data = DataConfig(source="hub", name=str(dataset_folder), text_field="text")
    with pytest.raises(TestbedError, match=r"data.text_field=text: no such column .*columns: story, id"):
        load_documents(data, seed=0)


def test_hub_path_unknown_split_is_a_clear_error(dataset_folder):
    data = DataConfig(source="hub", name=str(dataset_folder), split="validation", text_field="story")
    with pytest.raises(TestbedError, match=r"split=validation: could not be loaded .*Bad split"):
        load_documents(data, seed=0)


@pytest.fixture
def two_subsets(tmp_path):
    """A dataset with two configurations, as wikitext or allenai/c4 has: load_dataset needs its name."""
    folder = tmp_path / "two"
    for subset in ("small", "other"):
        (folder / subset).mkdir(parents=True)
        (folder / subset / "train.jsonl").write_text(
            "".join(json.dumps({"text": f"{subset} story {i}."}) + "\n" for i in range(5)))
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: small\n  data_files: small/*.jsonl\n"
                                      "- config_name: other\n  data_files: other/*.jsonl\n---\n")
    return folder


def test_a_dataset_with_subsets_is_read_by_data_subset_and_a_missing_one_names_the_choices(two_subsets):
    """Before 2026-11-29 no key chose one, and the error kept only "Config name is missing." of the message."""
    data = DataConfig(source="hub", name=str(two_subsets), subset="other")
    assert load_documents(data, seed=0)[:2] == ["other story 0.", "other story 1."]
    assert source_name(data) == f"hub:{two_subsets}/other"
    with pytest.raises(TestbedError) as e:
        load_documents(DataConfig(source="hub", name=str(two_subsets)), seed=0)
    assert str(e.value) == f"data.name={two_subsets}: choose its subset, one of ['small', 'other'], with data.subset=NAME"


def test_a_file_given_as_a_hub_dataset_is_named_even_offline(tmp_path, monkeypatch):
    """A relative path was reported as "the Hugging Face Hub could not be reached" when offline."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs.jsonl").write_text('{"text": "a story."}\n')
    with pytest.raises(TestbedError, match=r"^data\.name=docs\.jsonl: a file; .* data\.source=local data\.path=docs\.jsonl$"):
        load_documents(DataConfig(source="hub", name="docs.jsonl"), seed=0)
