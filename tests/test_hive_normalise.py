"""Hive result objects, replayed from fixtures through the normaliser."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from moderation.hive.errors import HiveError
from moderation.hive.normalise import fingerprint, normalise

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "hive"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def success(output: list, **response) -> dict:
    """A minimal result with one successful status entry."""
    return {"id": "t-1", "code": 200, "status": [
        {"status": {"code": "0", "message": "SUCCESS"}, "response": {"output": output, **response}}]}


def failure(*codes_and_messages: tuple) -> dict:
    return {"id": "t-2", "code": 200, "status": [
        {"status": {"code": code, "message": message}, "response": {"output": []}}
        for code, message in codes_and_messages]}


# --- visual --------------------------------------------------------------

def test_an_image_keeps_every_class_score_of_its_single_frame():
    n = normalise(load("image.json"))
    assert n.scores == {
        "general_nsfw": 0.0021, "general_suggestive": 0.9012, "general_not_nsfw_not_suggestive": 0.0967,
        "yes_female_underwear": 0.8123, "no_female_underwear": 0.1877,
        "yes_alcohol": 0.0105, "no_alcohol": 0.9895,
        "gun_in_hand": 0.0003, "gun_not_in_hand": 0.0011, "no_gun": 0.9986,
    }
    assert (n.top_class, n.top_score) == ("no_gun", 0.9986)
    assert n.timeline == []
    assert n.failed_entries == []
    assert n.task_id == "6f0b5c2e-5a0e-11f0-9c1a-0242ac120002"
    assert n.metadata == "2b9e7c1a-0f4d-4e8a-9d3b-6c1f0e2a7b55"
    assert n.model_version == "1"
    assert n.review is None


def test_a_video_scores_each_class_at_its_worst_frame():
    n = normalise(load("video.json"))
    assert n.scores == {
        "general_nsfw": 0.91, "general_suggestive": 0.70, "general_not_nsfw_not_suggestive": 0.94,
        "yes_alcohol": 0.40, "no_alcohol": 0.99,
    }
    assert (n.top_class, n.top_score) == ("no_alcohol", 0.99)


def test_a_video_timeline_has_one_point_per_frame_in_time_order():
    result = load("video.json")
    result["status"][0]["response"]["output"].reverse()
    n = normalise(result)
    assert [point["time"] for point in n.timeline] == [0, 1, 2, 3]
    assert n.timeline[2]["scores"]["general_nsfw"] == 0.91
    assert n.timeline[1]["scores"] == {
        "general_nsfw": 0.12, "general_suggestive": 0.70, "general_not_nsfw_not_suggestive": 0.18,
        "yes_alcohol": 0.40, "no_alcohol": 0.60,
    }


def test_a_failed_status_entry_is_skipped_but_recorded():
    n = normalise(load("video_multi_status.json"))
    # The failed entry carried general_nsfw 0.99 at 5 s: none of it counts.
    assert n.scores == {"general_nsfw": 0.45, "general_suggestive": 0.62, "general_not_nsfw_not_suggestive": 0.95}
    assert [point["time"] for point in n.timeline] == [0, 1, 2, 3, 4]
    assert n.failed_entries == [{"index": 1, "error_code": "3000", "message": "Classifier error on frames 5-6"}]
    assert (n.top_class, n.top_score) == ("general_not_nsfw_not_suggestive", 0.95)


def test_a_detector_scores_each_class_at_its_best_bounding_box():
    n = normalise(load("bounding_poly.json"))
    assert n.scores == {"gun": 0.93, "knife": 0.67}
    assert (n.top_class, n.top_score) == ("gun", 0.93)
    assert [point["time"] for point in n.timeline] == [0, 1, 2]
    assert n.timeline[1]["scores"] == {"gun": 0.88, "knife": 0.67}
    assert n.timeline[2]["scores"] == {}
    assert n.model_version == "2.1"


def test_entries_at_the_same_time_merge_into_one_timeline_point():
    result = success([{"time": 0, "classes": [{"class": "a", "score": 0.2}]},
                      {"time": 1, "classes": [{"class": "a", "score": 0.3}]}])
    result["status"].append(copy.deepcopy(result["status"][0]))
    result["status"][1]["response"]["output"] = [{"time": 1, "classes": [{"class": "b", "score": 0.4}]}]
    n = normalise(result)
    assert n.timeline == [{"time": 0, "scores": {"a": 0.2}}, {"time": 1, "scores": {"a": 0.3, "b": 0.4}}]


# --- text and speech -----------------------------------------------------

def test_text_severities_are_divided_by_three_and_unsupported_heads_left_out():
    n = normalise(load("text.json"))
    assert n.scores["bullying"] == pytest.approx(2 / 3, abs=1e-9)
    assert round(n.scores["bullying"], 4) == 0.6667
    assert n.scores["hate"] == pytest.approx(1 / 3, abs=1e-9)
    assert n.scores["promotions"] == 1.0
    assert n.scores["sexual"] == 0.0
    assert "child_exploitation" not in n.scores
    assert set(n.scores) == {"sexual", "hate", "violence", "bullying", "spam", "promotions", "self_harm"}
    assert (n.top_class, n.top_score) == ("promotions", 1.0)
    assert n.timeline == []
    assert n.model_version == "2"


def test_text_filters_become_text_matches():
    n = normalise(load("text.json"))
    assert n.text_matches == [{"value": "idiot", "start_index": 25, "end_index": 30, "type": "bullying"}]


def test_speech_joins_transcripts_and_takes_the_worst_classification():
    n = normalise(load("speech.json"))
    assert n.transcript == "hello everyone welcome back I will hurt you if you come here again"
    assert n.scores["violence"] == 1.0
    assert n.scores["bullying"] == pytest.approx(2 / 3, abs=1e-9)
    assert n.scores["sexual"] == 0.0
    assert "child_exploitation" not in n.scores
    assert (n.top_class, n.top_score) == ("violence", 1.0)
    assert [point["time"] for point in n.timeline] == [0, 6.2]
    assert n.timeline[1]["scores"]["bullying"] == pytest.approx(2 / 3, abs=1e-9)


def test_the_severity_scale_can_be_forced_either_way():
    assert normalise(load("image.json"), severity_scale=True).scores["general_suggestive"] == pytest.approx(
        0.9012 / 3, abs=1e-9)
    assert normalise(load("text.json"), severity_scale=False).scores["hate"] == 1.0
    bare = success([{"classes": [{"class": "hate", "score": 2}]}])
    assert normalise(bare, severity_scale=True).scores["hate"] == pytest.approx(2 / 3, abs=1e-9)


# --- liberal reading -----------------------------------------------------

def test_scores_and_times_given_as_strings_are_read():
    n = normalise(success([{"time": "0"}, {"time": "1.5", "classes": [{"class": "x", "score": "0.25"}]}]))
    assert n.scores == {"x": 0.25}
    assert [point["time"] for point in n.timeline] == [0, 1.5]


def test_a_status_code_given_as_int_zero_counts_as_success():
    result = success([{"classes": [{"class": "x", "score": 0.5}]}])
    result["status"][0]["status"] = {"code": 0}
    assert normalise(result).scores == {"x": 0.5}


def test_top_class_ties_are_broken_by_class_name():
    n = normalise(success([{"classes": [{"class": "zebra", "score": 0.5}, {"class": "apple", "score": 0.5},
                                        {"class": "mango", "score": 0.1}]}]))
    assert (n.top_class, n.top_score) == ("apple", 0.5)


def test_a_successful_entry_without_output_gives_no_scores():
    n = normalise(success([]))
    assert (n.scores, n.top_class, n.top_score, n.timeline) == ({}, None, None, [])


def test_unreadable_classes_are_skipped_and_the_rest_kept():
    n = normalise(success([{"classes": [{"class": None, "score": 1}, {"score": "high"}, "junk",
                                        {"class": "x", "score": "nan"}, {"class": "y", "score": 0.3}]}]))
    assert n.scores == {"y": 0.3}


def test_classes_given_as_a_mapping_and_empty_boxes_are_read():
    n = normalise(success([{"classes": {"x": 0.5, "y": "bad"}, "bounding_poly": [None, {"classes": None}]}]))
    assert n.scores == {"x": 0.5}


def test_malformed_status_entries_count_as_failed():
    n = normalise({"status": [{"status": "SUCCESS", "response": []}, None,
                              {"status": {"message": "SUCCESS"}, "response": None}]})
    assert n.scores == {}
    assert [entry["index"] for entry in n.failed_entries] == [0, 1]


@pytest.mark.parametrize("result", [[], "text", None, {}, {"status": "nope"}, {"status": [None]}])
def test_unusable_results_raise_hive_error_only(result):
    with pytest.raises(HiveError):
        normalise(result)


# --- review --------------------------------------------------------------

def test_a_top_level_review_is_kept_as_given():
    result = load("image.json")
    result["review"] = {"decision": "approved", "moderator": "m-17", "classes": ["general_suggestive"]}
    assert normalise(result).review == {"decision": "approved", "moderator": "m-17", "classes": ["general_suggestive"]}


def test_a_review_inside_a_status_response_is_kept():
    result = load("image.json")
    result["status"][0]["response"]["review"] = {"verdict": "reject"}
    assert normalise(result).review == {"verdict": "reject"}


def test_a_review_without_model_output_is_still_a_result():
    n = normalise({"id": "t-9", "metadata": "s-1", "review": {"verdict": "accept"}})
    assert (n.review, n.scores, n.task_id, n.metadata) == ({"verdict": "accept"}, {}, "t-9", "s-1")


# --- failures ------------------------------------------------------------

def test_a_download_failure_is_transient_and_flagged_for_mirroring():
    with pytest.raises(HiveError) as caught:
        normalise(load("task_error_download.json"))
    error = caught.value
    assert not error.permanent
    assert error.download_error
    assert error.error_codes == ("2101",)
    assert error.message == "Failed to download media from URL: remote server answered 403 Forbidden"


def test_a_corrupt_file_is_permanent():
    with pytest.raises(HiveError) as caught:
        normalise(load("task_error_corrupt.json"))
    error = caught.value
    assert error.permanent
    assert not error.download_error
    assert error.error_codes == ("3300",)
    assert "Corrupt file" in error.message


@pytest.mark.parametrize("code", ["2000", "2101", "2203"])
def test_download_error_codes_are_transient(code):
    with pytest.raises(HiveError) as caught:
        normalise(failure((code, "could not fetch")))
    assert (caught.value.permanent, caught.value.download_error) == (False, True)


def test_a_generic_error_is_transient_without_mirroring():
    with pytest.raises(HiveError) as caught:
        normalise(failure(("1000", "Internal error")))
    assert (caught.value.permanent, caught.value.download_error) == (False, False)


@pytest.mark.parametrize("code", ["3000", "3100", "3200", "3300", "3401"])
def test_classifier_error_codes_are_permanent(code):
    with pytest.raises(HiveError) as caught:
        normalise(failure((code, "refused")))
    assert caught.value.permanent


def test_any_permanent_code_makes_the_whole_failure_permanent_with_every_message():
    with pytest.raises(HiveError) as caught:
        normalise(failure(("2101", "URL expired"), ("3100", "Unsupported media type")))
    error = caught.value
    assert error.permanent
    assert not error.download_error
    assert error.error_codes == ("2101", "3100")
    assert error.message == "URL expired; Unsupported media type"


def test_a_rate_limit_task_error_is_transient_with_hives_message():
    with pytest.raises(HiveError) as caught:
        normalise(load("rate_limited_429.json"))
    assert (caught.value.permanent, caught.value.status_code) == (False, 429)
    assert caught.value.message == "Project has been rate limited"


@pytest.mark.parametrize("body, permanent", [
    ({"return_code": 400, "message": "Invalid input"}, True),
    ({"code": 403, "message": "Forbidden"}, True),
    ({"code": 500, "message": "Internal server error"}, False),
    ({"code": "503"}, False),
])
def test_a_top_level_task_error_raises_by_its_code(body, permanent):
    with pytest.raises(HiveError) as caught:
        normalise(body)
    assert caught.value.permanent is permanent


def test_an_ack_without_status_entries_is_not_a_result():
    with pytest.raises(HiveError) as caught:
        normalise(load("ack_without_id.json"))
    assert not caught.value.permanent


# --- fingerprint ---------------------------------------------------------

def test_a_resent_callback_has_the_same_fingerprint():
    original, resent = load("image.json"), load("callback_resent.json")
    assert resent["resent_by"] == "manual"
    assert fingerprint(resent) == fingerprint(original)
    assert len(fingerprint(original)) == 64


def test_a_different_result_has_a_different_fingerprint():
    original = load("image.json")
    changed = copy.deepcopy(original)
    changed["status"][0]["response"]["output"][0]["classes"][0]["score"] = 0.0022
    assert fingerprint(changed) != fingerprint(original)
    assert fingerprint(load("video.json")) != fingerprint(original)


def test_only_top_level_resend_markers_are_ignored():
    original = load("image.json")
    nested = copy.deepcopy(original)
    nested["status"][0]["resent_on"] = "2025-11-20T15:40:02Z"
    assert fingerprint(nested) != fingerprint(original)
