package cluster

import (
	"testing"
)

func TestElections(t *testing.T) {
	n := startNode(t, testConfig("solo"))
	ctx := t.Context()
	if got := n.Elections().List(); len(got) != 0 {
		t.Fatalf("elections before any campaign: %+v", got)
	}
	var a Lease
	eventually(t, "campaign", func() (err error) {
		a, err = n.Elections().Campaign(ctx, "b-lock", CampaignRequest{Session: "app", TTLMillis: 30000})
		return err
	})
	if _, err := n.Elections().Campaign(ctx, "a-lock", CampaignRequest{Session: "other", TTLMillis: 30000}); err != nil {
		t.Fatal(err)
	}
	got := n.Elections().List()
	if len(got) != 2 || got[0].Name != "a-lock" || got[1].Name != "b-lock" {
		t.Fatalf("elections %+v, want a-lock and b-lock, sorted", got)
	}
	b := got[1]
	if !b.Held || b.Holder != "solo" || b.Session != "app" || b.Token != a.Token || b.ValidFor() <= 0 || b.TTLMillis != 30000 {
		t.Fatalf("b-lock %+v, want held by solo/app with token %d", b, a.Token)
	}
	if _, err := n.Elections().Resign(ctx, "b-lock", ResignRequest{Session: "app", Token: a.Token}); err != nil {
		t.Fatal(err)
	}
	if got := n.Elections().List(); len(got) != 2 || got[1].Held {
		t.Fatalf("after resign: %+v, want b-lock listed and free", got)
	}
}
