import warnings

import pytest
import torch

from t2i.text import CaptionTable, TextEncoder


@pytest.fixture
def encoder(tiny_clip_dir):
    return TextEncoder.from_pretrained(str(tiny_clip_dir), max_tokens=8)


def count_forward_rows(encoder):
    """Wrap the encoder's forward to record how many prompts it encodes per call."""
    seen = []
    forward = encoder.model.forward

    def spy(*args, **kwargs):
        seen.append(kwargs["input_ids"].shape[0])
        return forward(*args, **kwargs)

    encoder.model.forward = spy
    return seen


def test_encoder_runs_once_per_unique_caption(encoder):
    seen = count_forward_rows(encoder)
    captions = [f"A handwritten digit {d}" for d in range(10)]
    first = encoder.encode(captions * 3)
    assert seen == [10]  # 30 prompts, 10 unique, one forward
    again = encoder.encode(captions[::-1])
    assert seen == [10]  # all cached
    assert torch.equal(again, first[:10].flip(0))
    CaptionTable.build(encoder, captions)
    assert seen == [10, 1]  # only the null prompt was new


def test_embeddings_have_fixed_token_length(encoder):
    assert encoder.encode(["A handwritten digit 1", "a"]).shape == (2, 8, 32)


def test_empty_prompt_gives_the_unconditional_embedding(encoder):
    assert torch.equal(encoder.encode([""])[0], encoder.null_embedding)
    assert not torch.equal(encoder.encode(["A handwritten digit 1"])[0], encoder.null_embedding)


def test_non_string_prompt_is_a_type_error_naming_the_value(encoder):
    with pytest.raises(TypeError, match="42"):
        encoder.encode(["A handwritten digit 1", 42])
    with pytest.raises(TypeError, match="single string"):
        encoder.encode("A handwritten digit 1")


def test_long_prompt_is_truncated_with_one_warning(encoder):
    long = "A handwritten digit 1 " * 10
    with pytest.warns(UserWarning, match="longer than 8 tokens") as record:
        emb = encoder.encode([long, long + "2", "A handwritten digit 1"])
    assert len(record) == 1 and "2 prompt(s)" in str(record[0].message)
    assert emb.shape == (3, 8, 32)
    # truncation keeps the first tokens: the same prefix gives the same embedding
    assert torch.allclose(emb[0], emb[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.encode([long])  # cached: no second warning


def test_missing_model_names_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="make assets"):
        TextEncoder.from_pretrained("openai/this-model-is-not-cached", max_tokens=8)
    with pytest.raises(FileNotFoundError, match="does not hold a complete model"):
        TextEncoder.from_pretrained(str(tmp_path), max_tokens=8)


def test_bundled_sentence_encoder_loads_offline_and_tells_digits_apart():
    encoder = TextEncoder.from_pretrained("bundled:all-MiniLM-L6-v2", max_tokens=8)
    emb = encoder.encode(["A handwritten digit 3", "A handwritten digit 8"])
    assert encoder.hidden_size == 384
    assert (emb[0] - emb[1]).abs().max() > 0.1


def test_caption_table_replaces_dropped_captions_with_the_null_embedding(encoder):
    table = CaptionTable.build(encoder, ["A handwritten digit 0", "A handwritten digit 1"])
    ids = torch.tensor([0, 1, 1])
    emb = table.embed(ids, drop=torch.tensor([False, True, False]))
    assert torch.equal(emb[0], table.embeddings[0])
    assert torch.equal(emb[1], table.null)
    assert torch.equal(emb[2], table.embeddings[1])
