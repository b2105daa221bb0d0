// Command etcd is the etcd server of the go.etcd.io/etcd/server/v3 version pinned in this module's
// go.mod, so the end-to-end tests run a known etcd without downloading release tarballs.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
