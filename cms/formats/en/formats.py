# Times in the admin to the second, in one unambiguous order: an operator compares them
# with the nodes' logs ("Dec. 1, 2026, 3:34 a.m." hid the seconds a failover takes).
DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
