"""``pbx serve`` at run time: the composition root (:mod:`.app`), the SIP
request dispatch (:mod:`.service`), dialplan reloads (:mod:`.reload`), the
pid file and signals (:mod:`.control`) and garbage-collector tuning
(:mod:`.gc_tuning`)."""
