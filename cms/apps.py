from django.contrib.admin.apps import AdminConfig


class CmsAdminConfig(AdminConfig):
    """Django's admin with the product's site (cms/admin_site.py) as the default site."""

    default_site = "cms.admin_site.CmsAdminSite"
