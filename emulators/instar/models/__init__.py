"""The camera's settings and rules, without HTTP: FTP target, upload actions, schedules."""
