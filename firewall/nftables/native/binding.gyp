{
  "targets": [
    {
      "target_name": "calico_nft",
      "sources": ["calico_nft.c"],
      "libraries": ["-lnftables"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}
