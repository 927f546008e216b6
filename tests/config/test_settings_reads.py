"""config/apps.py: `django.conf.settings` reads its values without LazyObject's per-read check, and still
follows override_settings (the values it keeps are dropped when the wrapped settings change)."""

from django.conf import LazySettings, settings
from django.test import override_settings

from config.apps import _Settings


def test_settings_reads_go_through_the_plain_attribute_lookup():
    assert type(settings) is _Settings
    assert isinstance(settings, LazySettings)
    assert settings.__class__.__name__ == "Settings"  # LazyObject still answers with the wrapped class


def _threads() -> int:
    return settings.BATON_WEB_THREADS


def test_a_kept_value_follows_override_settings_and_comes_back():
    original = _threads()
    assert "BATON_WEB_THREADS" in settings.__dict__  # kept after the first read
    with override_settings(BATON_WEB_THREADS=original + 5):
        assert _threads() == original + 5
        with override_settings(BATON_WEB_THREADS=1):
            assert _threads() == 1
        assert _threads() == original + 5
    assert _threads() == original


def test_a_setting_added_by_an_override_is_gone_after_it():
    with override_settings(BATON_SETTING_ONLY_IN_THIS_TEST="x"):
        assert settings.BATON_SETTING_ONLY_IN_THIS_TEST == "x"
    assert not hasattr(settings, "BATON_SETTING_ONLY_IN_THIS_TEST")
    assert settings.configured and settings.is_overridden("BATON_WEB_THREADS")
