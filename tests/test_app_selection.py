"""Selections, filters and the tables made from them (pure functions, no server)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from app_helpers import EVIL, make_run
from featscope.app import figures as F
from featscope.app import selection as S
from featscope.store import load


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return load(make_run(tmp_path_factory.mktemp("sel"), n=40))


@pytest.fixture()
def data(run):
    # Fresh per test: the mask cache must not carry state between tests.
    return F.map_data(run.table, run.class_names)


def test_bit_sets_round_trip_and_reject_foreign_input():
    ids = [0, 7, 8, 39]
    bits = S.encode_bits(ids, 40)
    mask = S.decode_bits(bits, 40)
    assert np.flatnonzero(mask).tolist() == ids
    assert len(bits) == 8  # 5 bytes for 40 points, whatever the selection's size
    assert S.decode_bits(bits, 41) is None  # another run's selection
    assert S.decode_bits("not base64!", 40) is None
    assert S.decode_bits(None, 40) is None
    assert S.decode_bits("A" * 10_000, 40) is None
    # np.packbits order, as the page's script packs them: bit 7 of byte 0 is id 0.
    assert S.decode_bits("gA==", 8).tolist() == [True] + [False] * 7


@pytest.mark.parametrize("raw", [
    None, [], "x", {"kind": "nope"}, {"kind": "map", "bits": S.encode_bits([1], 40), "n": 39},
    {"kind": "ids", "ids": [1, 40]}, {"kind": "ids", "ids": [True]}, {"kind": "ids", "ids": "1"},
    {"kind": "cell", "label": 1, "pred": "cat"},
])
def test_malformed_specs_are_no_selection(raw):
    assert S.parse_spec(raw, 40) is None


def test_every_kind_of_selection_resolves_to_its_images(run, data):
    t = run.table
    view = F.ViewState(mode="label")
    lasso = {"kind": "map", "bits": S.encode_bits([3, 5, 11], 40), "n": 40}
    assert S.selected_ids(lasso, data, view).tolist() == [3, 5, 11]
    assert S.selected_ids({"kind": "ids", "ids": [9, 2]}, data, view).tolist() == [2, 9]
    assert S.selected_ids({"kind": "filters"}, data, view).tolist() == list(range(40))
    assert S.selected_ids(None, data, view) is None
    # A confusion cell: exactly the images with that true label and that prediction.
    cell = {"kind": "cell", "label": "cat", "pred": "dog"}
    expected = np.flatnonzero((t["label"] == "cat").to_numpy() & (t["pred"] == "dog").to_numpy())
    assert len(expected) and S.selected_ids(cell, data, view).tolist() == expected.tolist()
    assert S.selected_ids({"kind": "cell", "label": "cat", "pred": "zebra"}, data,
                          view).tolist() == []


def test_selections_follow_the_filters(run, data):
    t = run.table
    everything = {"kind": "filters"}
    wrong = F.ViewState(mode="label", show="wrong")
    ids = S.selected_ids(everything, data, wrong)
    assert ids.tolist() == np.flatnonzero(~t["correct"].to_numpy(dtype=bool)).tolist()
    lasso = {"kind": "map", "bits": S.encode_bits(range(10), 40), "n": 40}
    assert set(S.selected_ids(lasso, data, wrong)) == set(ids) & set(range(10))


def vocab_index(data, name):
    return data.vocab.index(name)


def test_filter_combinations(run, data):
    t = run.table
    cat, dog = vocab_index(data, "cat"), vocab_index(data, "dog")
    f = F.ViewState.from_inputs(data, "label", [], "all", [0, 1],
                                {"labels": [cat], "preds": [cat, dog]})
    expected = (t["label"] == "cat") & t["pred"].isin(["cat", "dog"])
    np.testing.assert_array_equal(F.visible_mask(data, f), expected.to_numpy())
    # + misclassified only + a confidence band: every filter narrows the others.
    f = F.ViewState.from_inputs(data, "label", [], "wrong", [0.2, 0.95],
                                {"labels": [cat], "preds": [cat, dog]})
    conf = t["confidence"].to_numpy()
    expected = (expected.to_numpy() & ~t["correct"].to_numpy(dtype=bool)
                & (conf >= 0.2 - 1e-6) & (conf <= 0.95 + 1e-6))
    np.testing.assert_array_equal(F.visible_mask(data, f), expected)
    # Split: "train" and the images without a split (-1) are separate choices.
    train = data.splits.index("train")
    f = F.ViewState.from_inputs(data, "label", [], "all", None, {"splits": [train]})
    np.testing.assert_array_equal(F.visible_mask(data, f), (t["split"] == "train").fillna(False))
    f = F.ViewState.from_inputs(data, "label", [], "all", None, {"splits": [-1]})
    np.testing.assert_array_equal(F.visible_mask(data, f), t["split"].isna().to_numpy())
    # Unknown values from the page are dropped, never an error.
    f = F.ViewState.from_inputs(data, "label", [], "all", None,
                                {"labels": [999, "cat", True], "splits": [7], "search": 3})
    assert f.labels == frozenset() and f.splits == frozenset() and f.search == "3"


def test_file_name_search_ignores_case_and_takes_wildcards(run, data):
    names = run.table["relpath"].str.lower()
    f = F.ViewState(mode="label", search="IMG_00")
    np.testing.assert_array_equal(F.visible_mask(data, f), names.str.contains("img_00"))
    f = F.ViewState(mode="label", search="img_0*3.png")
    expected = names.str.match(r".*img_0.*3\.png")
    assert expected.sum() >= 1
    np.testing.assert_array_equal(F.visible_mask(data, f), expected)
    # Markup in a name is just characters to match.
    f = F.ViewState(mode="label", search="<img src=x")
    assert F.visible_mask(data, f).tolist() == names.str.contains("<img src=x", regex=False).tolist()
    assert F.visible_mask(data, f).sum() == 1


def test_masks_are_cached_and_read_only(data):
    view = F.ViewState(mode="label", show="wrong")
    a = F.visible_mask(data, view)
    assert F.visible_mask(data, F.ViewState(mode="label", show="wrong")) is a
    with pytest.raises(ValueError):
        a[0] = True


def test_gallery_order_and_pages(run):
    t = run.table
    ids = np.arange(40)
    by_conf = S.order_ids(ids, t, "confidence")
    assert np.all(np.diff(t["confidence"].to_numpy()[by_conf]) >= 0)
    wrong_first = S.order_ids(ids, t, "wrong")
    n_wrong = int((~t["correct"].to_numpy(dtype=bool)).sum())
    assert (~t["correct"].to_numpy(dtype=bool)[wrong_first[:n_wrong]]).all()
    assert S.order_ids(ids, t, "suspect").tolist() == ids.tolist()  # no scores: id order

    page = S.paginate(np.arange(100, 173), 0, 30)
    assert page.ids.tolist() == list(range(100, 130)) and page.n_pages == 3
    assert page.text() == "1–30 of 73 images"
    last = S.paginate(np.arange(100, 173), 9, 30)  # past the end: the last page
    assert last.page == 2 and last.ids.tolist() == list(range(160, 173))
    assert last.text() == "61–73 of 73 images"
    assert S.paginate(np.arange(0), 0, 30).text() == "no images"
    assert S.step_page(2, "gal-next", "gal-prev", "gal-next") == 3
    assert S.step_page(0, "gal-prev", "gal-prev", "gal-next") == 0
    assert S.step_page(4, "subset", "gal-prev", "gal-next") == 0  # a new selection: page 1


def test_selection_table_and_csv_content(run):
    t = run.table
    ids = [1, 0, 17]
    table = S.selection_table(t, ids)
    assert list(table.columns) == ["id", "path", "label", "pred", "confidence", "x", "y"]
    assert table["id"].tolist() == ids
    text = S.selection_csv(t, ids)
    back = pd.read_csv(io.StringIO(text))
    assert back["id"].tolist() == ids
    assert back["path"].tolist() == t["path"].iloc[ids].tolist()  # markup, quotes: intact
    assert EVIL in back.loc[0, "path"]
    assert back["label"].tolist() == t["label"].iloc[ids].tolist()
    assert back["pred"].tolist() == t["pred"].iloc[ids].tolist()
    np.testing.assert_allclose(back["confidence"], t["confidence"].iloc[ids], rtol=1e-5)
    np.testing.assert_allclose(back["x"], t["x"].iloc[ids], rtol=1e-5)
    np.testing.assert_allclose(back["y"], t["y"].iloc[ids], rtol=1e-5)
    assert S.selection_paths(t, ids).splitlines() == t["path"].iloc[ids].tolist()
    pd.testing.assert_frame_equal(run.selection(ids), table)  # the same from featscope.load
    # A name with a comma, a quote and a newline still makes one CSV row.
    odd = t.copy()
    odd.loc[0, "path"] = '/data/a,"b"\nc.jpg'
    back = pd.read_csv(io.StringIO(S.selection_csv(odd, [0, 1])))
    assert back["path"].tolist() == ['/data/a,"b"\nc.jpg', t["path"].iat[1]]


def test_composition_counts(run, data):
    t = run.table
    ids = np.array([0, 1, 2, 4, 5, 9, 13, 14, 22, 31, 34])
    comp = S.composition(t, ids)

    def nonzero(col):
        return {k: int(v) for k, v in comp[col].items() if v}

    assert nonzero("true") == t["label"].iloc[ids].value_counts().to_dict()
    assert nonzero("pred") == t["pred"].iloc[ids].value_counts().to_dict()
    assert set(comp.index) == set(t["label"].iloc[ids]) | set(t["pred"].iloc[ids])
    assert (comp["true"] + comp["pred"]).is_monotonic_decreasing
    # The app's bincount version gives the same table.
    pd.testing.assert_frame_equal(S.composition_of(data, ids), comp)
    s = S.summarize(data, ids)
    assert s.count == len(ids)
    assert s.wrong == int((~t["correct"].to_numpy(dtype=bool)[ids]).sum())
    assert s.text().startswith(f"{len(ids)} images · {s.wrong} misclassified")
    assert S.summarize(data, np.arange(0)).text() == "nothing selected"


def test_composition_of_an_unlabelled_run(tmp_path):
    run = load(make_run(tmp_path, n=9, labelled=False))
    data = F.map_data(run.table, run.class_names)
    comp = S.composition(run.table, np.arange(9))
    assert comp.loc[S.UNLABELLED, "true"] == 9
    pd.testing.assert_frame_equal(S.composition_of(data, np.arange(9)), comp)
