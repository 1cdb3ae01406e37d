{
  "targets": [
    {
      "target_name": "calico_memory",
      "sources": ["calico_memory.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
