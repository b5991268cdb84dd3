"""The sandbox kubelet: one fake GPU node whose pods run as host processes, and its scheduler."""
