"""The leak check: texts judged as the model saw them (code and links as placeholders), one rule for a
translation's language, placeholders lost or made up."""

from __future__ import annotations

from translane.tools.files._leaks import LeakChecker
from translane.tools.files._protect import protect


def test_code_and_links_kept_as_they_are_are_no_leak() -> None:
    checker = LeakChecker("de", "en")
    original = "Set `max_output_tokens`, `glossary` and `mime_type` (`text/plain`, `text/html`) on each call."
    masked, _ = protect(original, "markdown")
    answer = "Setze {0}, {1} und {2} ({3}, {4}) bei jedem Aufruf."
    assert checker.check(0, masked, answer) is None
    # The same answer with the code put back reads as English: that is why the check sees it masked.
    assert checker.foreign("Setze `max_output_tokens`, `glossary` und `mime_type` (`text/plain`, `text/html`).")
    assert checker.foreign("{0}, {1}, {2}") is None


def test_placeholders_lost_or_made_up_are_leaks() -> None:
    checker = LeakChecker("de", "en")
    lost = checker.check(0, "Read {0}the docs{1} first.", "Lies zuerst die Dokumentation.")
    assert lost is not None and lost.reason == "2 placeholder(s) missing"
    made_up = checker.check(0, "Read the docs first.", "Lies zuerst {0} die Dokumentation.")
    assert made_up is not None and "{0} not in the original" in made_up.reason


def test_text_left_in_english_is_a_leak_even_when_no_language_is_sure() -> None:
    checker = LeakChecker("de")
    leak = checker.foreign("Run {0} at {1}the lamp's page{2} when it is dark.")
    assert leak is not None and leak.startswith("in en")
    assert checker.foreign("Führe {0} auf {1}der Seite der Lampe{2} aus, wenn es dunkel ist.") is None
    # On a short text the guesses spread thin: a translation there is no leak for want of a sure reading.
    assert LeakChecker("fr").foreign("[sim] la est ({0} nuit)") is None
    still = LeakChecker("de", "en").foreign("This paragraph was never translated at all.")
    assert still is not None and still.startswith("still in the source language (en, ")


def test_a_close_neighbour_of_the_target_is_no_leak() -> None:
    # Norwegian read as Danish on a short sentence is the detector's doubt, not text left untranslated.
    assert LeakChecker("da").foreign("Klikk på Lagre for å lagre endringene dine nå.") is None
    assert LeakChecker("ms").foreign("Terima kasih karena Anda bisa datang ke kantor kami.") is None
