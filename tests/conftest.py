import os

# datasets and huggingface_hub read these when they are first imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from testbed.config import ModelConfig  # noqa: E402

# The test models are tiny: intra-op threads only add synchronisation, which on a
# busy 2-core machine made a forward pass 20-100x slower.
torch.set_num_threads(1)
from testbed.model import build_model  # noqa: E402

EOS_ID = 0
VOCAB = 64

# The GPU code paths (the compiled static-cache sampler, bf16 training on CUDA) are tested where a GPU is at hand;
# CI has none, so each such test also runs its CPU twin.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"))]


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """accelerate keeps one precision per process: each test starts without the one an earlier test's run set
    (the quickstart trains in bf16 on a CPU that has it, and a test's Accelerator(cpu=True) would inherit that)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    yield


@pytest.fixture
def make_model():
    """A random 1-layer GPT-2 (or family="llama") model (context 32, vocab 64, EOS id 0), seeded."""
    def make(seed: int = 0, vocab: int = VOCAB, context: int = 32, family: str = "gpt2"):
        torch.manual_seed(seed)
        return build_model(ModelConfig(family=family, n_layer=1, n_embd=32, n_head=2, context=context), vocab, EOS_ID).eval()
    return make


@pytest.fixture
def eos_bias():
    """eos_bias(model, b) adds b to the EOS logit on every forward (GPT-2's output layer has no bias)."""
    handles = []

    def add(model, bias: float):
        def hook(module, args, out):
            out = out.clone()
            out[..., EOS_ID] += bias
            return out
        handles.append(model.lm_head.register_forward_hook(hook))
    yield add
    for h in handles:
        h.remove()


@pytest.fixture(scope="session")
def as_ids():
    """Lists of token ids as encode() returns them: views into one flat uint16 array."""
    from testbed.tokenizer import TokenIds

    def make(docs):
        return TokenIds(np.array([t for d in docs for t in d], np.uint16), np.cumsum([0, *map(len, docs)]))
    return make


@pytest.fixture(scope="session")
def words_corpus():
    """A few hundred varied English words, enough for a 300-token BPE."""
    text = (
        "Once upon a time a small fox lived near the river. Every morning she ran through the tall grass, "
        "looking for berries, mushrooms and shiny stones. Her friend the owl watched from an old oak tree "
        "and told her stories about the mountains, the sea and the city far away. One day a storm came: "
        "thunder rolled, rain poured, and the river rose over its banks. The fox helped the rabbits carry "
        "their children to the hill, while the owl guided the ducks. When the sun returned, everybody "
        "thanked them with a feast of apples, honey, carrots and warm bread. Lily's brother didn't believe "
        "the story at first, but the quiet village remembered that brave night for many years. "
        "Jumping zebras quickly vexed the wizard; seven bright kites flew above purple hills."
    )
    return [s.strip() for s in text.split(". ") if s.strip()] * 3


# TESTBED_SHARED_DATA: another folder of the shared corpora, or a missing one to try the stand-in below.
SHARED_DATA = Path(os.environ.get("TESTBED_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
TINYSTORIES = SHARED_DATA / "tinystories-sample.txt"


@pytest.fixture(scope="session")
def local_corpus(tmp_path_factory) -> Path:
    """The shared TinyStories sample, or where a clone has no ../shared beside it, a file of the built-in world's
    stories written for the session: the loop's tests then run from any clone (they compare runs with runs, not
    with TinyStories' own figures), and read a local file either way, as a user's corpus is read."""
    if TINYSTORIES.exists():
        return TINYSTORIES
    from testbed.corpus.storyworld import StoryWorld

    path = tmp_path_factory.mktemp("corpus") / "stories.txt"
    path.write_text("\n\n".join(StoryWorld().sample(700, 0)) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_run(local_corpus):
    """tiny_run(run_dir, *overrides): a config for a whole run in seconds, on a local file of stories (local_corpus)
    or, with data.source=storyworld among the overrides, on the built-in corpus."""
    from testbed.config import load_config

    def make(run_dir, *extra):
        return load_config(None, [
            f"run_dir={run_dir}", "generations=2",
            *([] if "data.source=storyworld" in extra else ["data.source=local", f"data.path={local_corpus}"]),
            "data.separator=paragraph", "data.max_docs=600", "data.heldout_docs=60", "tokenizer.vocab_size=512",
            "model.preset=nano", "model.context=64", "train.tokens=12000", "train.batch_size=8",
            "sample.size=80", "sample.batch_size=40", "eval.sample_words=1500",
            # About 18,000 training words: under the default share no count qualifies as rare and every tail figure
            # would be null; at 2e-4 a word seen at most 3 times is rare, so the tests' tails are real ones.
            "eval.rare_max_freq=2e-4", *extra])
    return make


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
    """The quickstart runs once a process: when the slow suite runs on several workers (.ci/run: -n auto --dist
    loadgroup), every test that reads it goes to one of them, which runs it once while the others run the rest."""
    for item in items:
        if "quickstart_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("quickstart"))


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory):
    """The quickstart as a user runs it, once per session for the slow tests (about 13 minutes: tests run torch on one thread)."""
    from testbed.cli import main

    run_dir = tmp_path_factory.mktemp("quickstart") / "run"
    assert main(["run", str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"),
                 f"run_dir={run_dir}"]) == 0
    return run_dir
