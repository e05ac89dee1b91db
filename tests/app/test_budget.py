"""The lab's statement of the two networks' training budgets, from their metadata."""

from app.sentences import budget_sentence, training_budget

FIRST = {"epochs": 4, "hours": 2.126, "command": "python -m capsnet.train --epochs 6"}
CNN = {"epochs": 4, "train_seconds": 1612.2}


def test_a_lineage_adds_up_its_runs_and_a_plain_file_is_one_run():
    caps = {"epochs": 3.5, "train_seconds": 5000.0, "lineage": [FIRST, {"epochs": 3.5, "hours": 1.5}]}
    assert training_budget(caps) == (7.5, 2.126 + 1.5)
    assert training_budget(CNN) == (4, 1612.2 / 3600)
    assert training_budget({"epochs": 4}) == (4, None)


def test_unequal_budgets_are_said_plainly_with_both_numbers_and_their_ratio():
    caps = {"lineage": [FIRST, {"epochs": 6.0, "hours": 1.9}]}
    text = budget_sentence(caps, CNN)
    assert "budgets differ" in text
    assert "CapsNet 10 epochs in 4.0 h over 2 runs" in text and "the CNN 4 epochs in 0.4 h" in text
    assert f"{(2.126 + 1.9) / (1612.2 / 3600):.1f}× the CNN's hours" in text and "2.5× its epochs" in text


def test_equal_budgets_say_so_and_a_silent_file_is_not_compared():
    same = budget_sentence({"epochs": 4, "train_seconds": 7650.0}, CNN)
    assert (
        same
        == "Both networks trained for the same 4 epochs on the same data (CapsNet 4 epochs in 2.1 h, the CNN 4 epochs in 0.4 h)."
    )
    assert "cannot be compared" in budget_sentence({"epochs": 4}, CNN)
