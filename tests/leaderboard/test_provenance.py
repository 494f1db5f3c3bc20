"""The facts a submission trusts are read from the keys the evaluator records them under."""

from ikl_zoo.leaderboard.records import checkpoint_sha256, missing_facts, replaced_weights

VERSIONS = {"torch": "2.14.1", "pyautoattack": "0.2.0", "ikl_zoo": "0.1.0"}


def test_checkpoint_sha256_is_the_files_hash_never_the_weights_or_data_digest():
    evaluator_order = {"weights_sha256": "aa", "data_sha256": "bb", "checkpoint_sha256": "cc"}
    assert checkpoint_sha256(evaluator_order) == "cc"
    assert checkpoint_sha256({"weights_sha256": "aa", "data_sha256": "bb"}) is None


def test_a_result_without_the_files_hash_lacks_the_checkpoint_fact():
    provenance = {**VERSIONS, "devices": ["cpu"], "weights_sha256": "aa", "data_sha256": "bb"}
    assert missing_facts(provenance) == ["checkpoint sha256"]
    assert missing_facts({**provenance, "checkpoint_sha256": "cc"}) == []


def test_replaced_weights_are_read_from_their_own_key():
    keyed = {"replaced_weights": "mine.pt", "model_source": "demo-resnet18 (reworded)"}
    assert replaced_weights(keyed) == "mine.pt"
    assert replaced_weights({"replaced_weights": None, "model_source": "x with weights from y"}) is None
    assert replaced_weights({"model_source": "demo-resnet18 (ResNet-18), published weights"}) is None
