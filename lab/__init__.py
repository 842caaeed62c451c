"""The lab: real CoreDNS under realistic cluster-DNS traffic with labelled faults."""
