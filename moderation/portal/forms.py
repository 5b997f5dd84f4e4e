"""Portal forms: queue filters, decisions, preferences."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from django import forms
from django.utils import timezone

from moderation.models import ModeratorPreference
from moderation.services.review import ACTIONS, QueueFilters


class QueueFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=255, label="Submission or external id")
    project = forms.ChoiceField(required=False)
    cls = forms.CharField(required=False, max_length=100, label="Class")
    min_score = forms.FloatField(required=False, min_value=0, max_value=1, label="Score from")
    max_score = forms.FloatField(required=False, min_value=0, max_value=1, label="Score to")
    date_from = forms.DateField(required=False, label="Submitted from",
                                widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="Submitted to",
                              widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, projects=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"].choices = [("", "All projects")] + [(p.slug, p.name) for p in projects]
        for name in ("min_score", "max_score"):
            self.fields[name].widget.attrs.update(step="0.05", placeholder="0–1")

    def filters(self) -> QueueFilters:
        if not self.is_valid():
            return QueueFilters()
        data = self.cleaned_data
        return QueueFilters(
            project=data["project"], cls=data["cls"].strip(), q=data["q"].strip(),
            min_score=data["min_score"], max_score=data["max_score"],
            date_from=_start_of(data["date_from"]),
            date_to=_start_of(data["date_to"] + timedelta(days=1)) if data["date_to"] else None,
        )

    @property
    def active(self) -> bool:
        return self.is_bound and any(self.data.get(name) for name in self.fields)


def _start_of(day) -> datetime | None:
    if day is None:
        return None
    return timezone.make_aware(datetime.combine(day, time.min))


class DecisionForm(forms.Form):
    action = forms.ChoiceField(choices=[(a, a) for a in ACTIONS])
    seen = forms.CharField(max_length=100)
    reason = forms.CharField(required=False, max_length=200)
    note = forms.CharField(required=False, max_length=4000, widget=forms.Textarea)
    next = forms.BooleanField(required=False)
    queue = forms.CharField(required=False, max_length=20)


class PreferenceForm(forms.ModelForm):
    class Meta:
        model = ModeratorPreference
        fields = ["blur_enabled", "blur_threshold", "grayscale", "video_muted"]
        labels = {
            "blur_enabled": "Blur media until I reveal it",
            "blur_threshold": "Blur when the top score is at least",
            "grayscale": "Show media in grayscale",
            "video_muted": "Start video and audio muted",
        }
        widgets = {"blur_threshold": forms.NumberInput(attrs={"step": "0.05", "min": "0", "max": "1"})}

    def clean_blur_threshold(self) -> float:
        value = self.cleaned_data["blur_threshold"]
        if not 0 <= value <= 1:
            raise forms.ValidationError("Between 0 and 1.")
        return value
