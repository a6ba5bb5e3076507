"""The API of alert channels (the URL write-only) and of the alert history (read-only)."""

from __future__ import annotations

from typing import Any

from rest_framework import mixins, serializers

from cms.api.viewsets import TeamScopedViewSet

from .forms import address_errors, url_errors
from .kinds import Kind
from .models import Alert, Channel


class TeamField(serializers.PrimaryKeyRelatedField):
    """One of the requesting user's teams; another team's id is as if it did not exist."""

    def get_queryset(self):
        teams = Channel._meta.get_field("team").related_model.objects
        return teams.for_user(self.context["request"].user)


class ChannelSerializer(serializers.ModelSerializer):
    team = TeamField()
    url = serializers.CharField(
        write_only=True, required=False, allow_blank=True, trim_whitespace=True,
        help_text="An apprise URL; stored encrypted and never returned (see has_url). "
        "Omit it to keep the stored one.",
    )  # fmt: skip
    has_url = serializers.SerializerMethodField(help_text="Whether a URL is stored.")
    kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=Kind.choices), required=False,
        help_text="The kinds sent to this channel; empty: every kind.",
    )  # fmt: skip

    class Meta:
        model = Channel
        fields = ["id", "team", "name", "type", "emails", "url", "has_url", "kinds", "enabled"]

    def get_has_url(self, obj: Channel) -> bool:
        return bool(obj.url)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        kind = attrs.get("type", getattr(self.instance, "type", Channel.EMAIL))
        url = attrs.get("url", "")
        errors: dict[str, str] = {}
        if kind == Channel.APPRISE:
            if url:
                errors["url"] = url_errors(url)
            elif not (self.instance and self.instance.url):
                errors["url"] = "An apprise channel needs its URL."
        else:
            emails = attrs.get("emails", getattr(self.instance, "emails", ""))
            errors["emails"] = (
                address_errors(emails) if emails.strip() else "An e-mail channel needs an address."
            )
        errors = {k: v for k, v in errors.items() if v}
        if errors:
            raise serializers.ValidationError(errors)
        if not url:
            attrs.pop("url", None)  # blank: keep the stored URL
        return attrs


class AlertSerializer(serializers.ModelSerializer):
    class Meta:
        model = Alert
        fields = ["id", "team", "channel", "kind", "subject", "body", "link", "state",
                  "attempts", "error", "created_at", "sent_at"]  # fmt: skip
        read_only_fields = fields


class ChannelViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    TeamScopedViewSet,
):
    serializer_class = ChannelSerializer
    queryset = Channel.objects.all()
    filterset_fields = ["team", "type", "enabled"]
    ordering_fields = ["name"]


class AlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TeamScopedViewSet):
    serializer_class = AlertSerializer
    queryset = Alert.objects.all()
    filterset_fields = ["team", "channel", "kind", "state"]
    ordering_fields = ["created_at"]
