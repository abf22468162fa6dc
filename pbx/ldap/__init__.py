"""Employees from an LDAP or Active Directory server into extensions:
``settings`` (the dialplan's ``ldap:``), ``sync`` (the pure diff),
``directory`` (the ldap3 edge) and ``apply`` (the dialplan edits)."""
