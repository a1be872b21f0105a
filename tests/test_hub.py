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
