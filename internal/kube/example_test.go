package kube_test

import (
	"fmt"
	"time"

	"github.com/validator-fencing/fencing/internal/fencing"
	"github.com/validator-fencing/fencing/internal/kube"
)

func ExampleParseBindings() {
	bs, err := kube.ParseBindings("validators/besu-validator-1=region-a:0x5b38da6a701c568545dcfcb03fcb875f56beddc4;validators/besu-validator-2=region-a")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, b := range bs {
		fmt.Println(b.Subject(), "->", b.Holder, b.Validators)
	}
	_, err = kube.ParseBindings("validators/besu-validator-1")
	fmt.Println(err)
	// Output:
	// system:serviceaccount:validators:besu-validator-1 -> region-a [0x5B38Da6a701c568545dCfcB03FcB875f56beddC4]
	// system:serviceaccount:validators:besu-validator-2 -> region-a []
	// auth bindings (want <namespace>/<serviceaccount>=<holder>[:<validator>,...] separated by ';'): entry 1 "validators/besu-validator-1": missing '=' between <namespace>/<serviceaccount> and <holder>
}

func ExampleEventNote() {
	fenced := fencing.Epoch{Epoch: 3, State: fencing.StateFenced, Holder: "region-a"}
	granted := fencing.Epoch{Epoch: 4, State: fencing.StateActive, Holder: "region-b", By: "alice", Reason: "region A lost"}
	fmt.Println(kube.EventNote(fencing.Event{
		Kind: fencing.EventGrant, Validator: "validator-1", At: time.Now(), From: &fenced, To: &granted, BumpID: "b-1",
	}))
	// Output:
	// validator validator-1: epoch 3 fenced on region-a -> epoch 4 active on region-b; by alice: region A lost (bump b-1)
}
