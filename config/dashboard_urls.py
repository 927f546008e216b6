"""Dashboard pages (server-rendered). Each area's views live in its app; this module wires them (it may
import every layer: it is the composition root)."""

from django.urls import path

from accounts import settings_views
from accounts import views as accounts_views
from accounts.choices import Role
from accounts.dashboard import dashboard_page
from audit import views as audit_views
from runs.views import approvals, notifications, overview, runs, usage, workflows
from workflows import settings_views as workflow_pages
from workflows import views as workflows_views

# Names are namespaced (`dashboard:run-detail`): the API's router uses the same resource names.
app_name = "dashboard"
urlpatterns = [
    path("", overview.overview, name="home"),
    path("login/", accounts_views.login_view, name="login"),
    path("logout/", accounts_views.logout_view, name="logout"),
    path("password-reset/", accounts_views.PasswordResetView.as_view(), name="password-reset"),
    path("password-reset/sent/", accounts_views.PasswordResetDoneView.as_view(), name="password-reset-done"),
    path(
        "password-reset/<uidb64>/<token>/",
        accounts_views.PasswordResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
    path("invitation/<uidb64>/<token>/", accounts_views.InvitationView.as_view(), name="invitation"),
    path("profile/", accounts_views.profile, name="profile"),
    path("profile/password/", accounts_views.PasswordChangeView.as_view(), name="password-change"),
    path("login/code/", accounts_views.login_code, name="login-code"),
    path("profile/two-factor/", accounts_views.two_factor_setup, name="two-factor"),
    path("profile/two-factor/disable/", accounts_views.two_factor_off, name="two-factor-disable"),
    path("organization/switch/", accounts_views.organization_switch, name="organization-switch"),
    path("workflows/", workflows.workflow_list, name="workflow-list"),
    path("templates/", workflows_views.template_gallery, name="template-gallery"),
    path(
        "templates/<str:template_id>/install/", workflows_views.template_install_view, name="template-install"
    ),
    path("workflows/new/", workflows_views.workflow_edit, name="workflow-new"),
    path("workflows/validate/", workflows_views.definition_validate, name="definition-validate"),
    path("workflows/<str:ref>/", workflows_views.workflow_detail, name="workflow-detail"),
    path("workflows/<str:ref>/edit/", workflows_views.workflow_edit, name="workflow-edit"),
    path("workflows/<str:ref>/run/", workflows.workflow_run, name="workflow-run"),
    path("workflows/<str:ref>/action/", workflows_views.workflow_action, name="workflow-action"),
    path(
        "workflows/<str:ref>/notifications/",
        notifications.workflow_notifications,
        name="workflow-notifications",
    ),
    path("workflows/<str:ref>/subscribers/", notifications.workflow_subscribers, name="workflow-subscribers"),
    path(
        "workflows/<str:ref>/subscribers/<str:user_id>/remove/",
        notifications.workflow_subscriber_remove,
        name="workflow-subscriber-remove",
    ),
    path("workflows/<str:ref>/versions/", workflow_pages.workflow_diff, name="workflow-diff"),
    path("workflows/<str:ref>/settings/", workflow_pages.workflow_settings, name="workflow-settings"),
    path(
        "workflows/<str:ref>/webhook/rotate/",
        workflow_pages.workflow_webhook_rotate,
        name="workflow-webhook-rotate",
    ),
    path("workflows/<str:ref>/schedules/", workflow_pages.workflow_schedules, name="workflow-schedules"),
    path("schedules/<str:schedule_id>/toggle/", workflow_pages.schedule_toggle, name="schedule-toggle"),
    path("schedules/<str:schedule_id>/delete/", workflow_pages.schedule_remove, name="schedule-delete"),
    path("runs/", runs.run_list, name="run-list"),
    path("runs/bulk/", runs.run_bulk_view, name="run-bulk"),
    path("runs/<str:run_id>/", runs.run_detail, name="run-detail"),
    path("runs/<str:run_id>/live/", runs.run_live, name="run-live"),
    path("runs/<str:run_id>/steps/<str:step_id>/<str:part>/", runs.run_step_data, name="run-step-data"),
    path("runs/<str:run_id>/control/", runs.run_control_view, name="run-control"),
    path("runs/<str:run_id>/rerun/", runs.run_rerun_view, name="run-rerun"),
    path("runs/<str:run_id>/delete/", runs.run_delete_view, name="run-delete"),
    path("runs/<str:run_id>/decide/", runs.run_decide_view, name="run-decide"),
    path("runs/<str:run_id>/answer/", runs.run_answer_view, name="run-answer"),
    path("approvals/", approvals.approvals_inbox, name="approvals"),
    path("settings/", accounts_views.organization_settings, name="organization-settings"),
    path("settings/api-keys/", accounts_views.api_key_list, name="api-key-list"),
    path("settings/api-keys/<str:key_id>/revoke/", accounts_views.api_key_revoke, name="api-key-revoke"),
    path("settings/members/", accounts_views.member_list, name="member-list"),
    path("settings/members/<str:user_id>/role/", accounts_views.member_role, name="member-role"),
    path("settings/members/<str:user_id>/remove/", accounts_views.member_remove, name="member-remove"),
    *settings_views.collection_urls(path),  # LLM providers, agents, secrets
    path("settings/security/", settings_views.security_settings, name="settings-security"),
    path("settings/security/rotate/", settings_views.signing_secret_rotate, name="signing-secret-rotate"),
    path("settings/usage/", usage.usage, name="settings-usage"),
    # The audit app sits below accounts: its access rule is applied here.
    path("audit/", dashboard_page(role=Role.ADMIN)(audit_views.audit_log), name="audit-log"),
    path("audit/verify/", dashboard_page(role=Role.ADMIN)(audit_views.audit_verify), name="audit-verify"),
    path(
        "audit/<str:event_id>/", dashboard_page(role=Role.ADMIN)(audit_views.audit_event), name="audit-event"
    ),
]
