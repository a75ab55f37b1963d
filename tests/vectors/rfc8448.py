"""Test vectors from RFC 8448, "Example Handshake Traces for TLS 1.3" (M. Thomson, January 2019).

https://www.rfc-editor.org/rfc/rfc8448 -- section 2 (server RSA key), section 3 ("Simple 1-RTT Handshake") and
section 4 ("Resumed 0-RTT Handshake"). Cipher suite TLS_AES_128_GCM_SHA256, group x25519.

Every value is the RFC's hex dump with the whitespace removed, transcribed exactly (byte counts match the RFC's
"(N octets)" annotations). The comment above each key names the RFC trace step ("{client}"/"{server}" line) and
the field of that step the value comes from. Values that the RFC repeats verbatim under several steps (for
example an HKDF "PRK" that is just an earlier secret, or a "salt" equal to the preceding "derived" output) are
kept once. "complete record" values are the exact bytes on the wire; "record_payload" values are the record
plaintexts (without the inner content-type byte for protected records).

Data only: no pqproxy code is imported here. tests/test_rfc8448_vectors_selfcheck.py checks internal consistency.
"""

from __future__ import annotations

__all__ = ["RESUMED_0RTT", "SERVER_RSA_KEY", "SIMPLE_1RTT"]


# Section 2, "Private Keys": the RSA key of the server certificate used in sections 3 and 4.
SERVER_RSA_KEY: dict[str, str] = {
    # RFC 8448 section 2, server RSA certificate private key: modulus (public)
    "modulus": (
        "b4bb498f8279303d980836399b36c6988c0c68de55e1bdb826d3901a2461eafd2de49a91d015abbc9a95137ace6c1af1"
        "9eaa6af98c7ced43120998e187a80ee0ccb0524b1b018c3e0b63264d449a6d38e22a5fda430846748030530ef0461c8c"
        "a9d9efbfae8ea6d1d03e2bd193eff0ab9a8002c47428a6d35a8d88d79f7f1e3f"
    ),
    # RFC 8448 section 2, server RSA certificate private key: public exponent
    "public_exponent": "010001",
    # RFC 8448 section 2, server RSA certificate private key: private exponent
    "private_exponent": (
        "04dea705d43a6ea7209dd8072111a83c81e322a59278b33480641eaf7c0a6985b8e31c44f6de62e1b4c2309f6126e77b"
        "7c41e923314bbfa3881305dc1217f16c819ce538e922f369828d0e57195d8c8488460207b2faa726bcf708bbd7db7f67"
        "9f893492fc2a622e08970aac441ce4e0c3088df25ae679233df8a3bda2ff9941"
    ),
    # RFC 8448 section 2, server RSA certificate private key: prime1 (p)
    "prime1": (
        "e435fb7cc83737756dacea96ab7f59a2cc1069db7deb190e17e33a532b273f30a327aa0aaabc58cd67466af9845fadc6"
        "75fe094af92c4bd1f2c1bc33dd2e0515"
    ),
    # RFC 8448 section 2, server RSA certificate private key: prime2 (q)
    "prime2": (
        "cabd3bc0e0438664c8d4cc9f99977a94d9bbfead8e43870abae3f7eb8b4e0eee8af1d9b4719ba6196cf2cbbaeeebf8b3"
        "490afe9e9ffa74a88aa51fc645629303"
    ),
    # RFC 8448 section 2, server RSA certificate private key: exponent1 (d mod (p-1))
    "exponent1": (
        "3f57345c27fe1b687e6e761627b78b1b826433dd760fa0bea6a6acf39490aa1b47cda4869d68f584dd5b5029bd32093b"
        "8258661fe715025e5d70a45a08d3d319"
    ),
    # RFC 8448 section 2, server RSA certificate private key: exponent2 (d mod (q-1))
    "exponent2": (
        "183da01363bd2f2885cacbdc9964bf4764f1517636f86401286f71893c52ccfe40a6c23d0d086b47c6fb10d8fd1041e0"
        "4def7e9a40ce957c417794e10412d139"
    ),
    # RFC 8448 section 2, server RSA certificate private key: coefficient (q^-1 mod p)
    "coefficient": (
        "839ca9a085e4286b2c90e466997a2c681f21339aa3477814e4dec11833050ed50dd13cc038048a43c59b2acc416889c0"
        "37665fe5afa605969f8c01dfa5ca969d"
    ),
}


# Section 3, "Simple 1-RTT Handshake".
SIMPLE_1RTT: dict[str, str] = {
    # {client} create an ephemeral x25519 key pair: private key
    "client_ephemeral_private": "49af42ba7f7994852d713ef2784bcbcaa7911de26adc5642cb634540e7ea5005",
    # {client} create an ephemeral x25519 key pair: public key
    "client_ephemeral_public": "99381de560e4bd43d23d8e435a7dbafeb3c06e51c13cae4d5413691e529aaf2c",
    # {client} construct a ClientHello handshake message (type + length + body, 196 octets)
    "client_hello": (
        "010000c00303cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece700000613011303130201"
        "0000910000000b0009000006736572766572ff01000100000a00140012001d0017001800190100010101020103010400"
        "230000003300260024001d002099381de560e4bd43d23d8e435a7dbafeb3c06e51c13cae4d5413691e529aaf2c002b00"
        "03020304000d0020001e040305030603020308040805080604010501060102010402050206020202002d00020101001c"
        "00024001"
    ),
    # {client} send handshake record: payload
    "client_hello_record_payload": (
        "010000c00303cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece700000613011303130201"
        "0000910000000b0009000006736572766572ff01000100000a00140012001d0017001800190100010101020103010400"
        "230000003300260024001d002099381de560e4bd43d23d8e435a7dbafeb3c06e51c13cae4d5413691e529aaf2c002b00"
        "03020304000d0020001e040305030603020308040805080604010501060102010402050206020202002d00020101001c"
        "00024001"
    ),
    # {client} send handshake record: complete record (TLSPlaintext)
    "client_hello_record": (
        "16030100c4010000c00303cb34ecb1e78163ba1c38c6dacb196a6dffa21a8d9912ec18a2ef6283024dece70000061301"
        "13031302010000910000000b0009000006736572766572ff01000100000a00140012001d001700180019010001010102"
        "0103010400230000003300260024001d002099381de560e4bd43d23d8e435a7dbafeb3c06e51c13cae4d5413691e529a"
        "af2c002b0003020304000d0020001e040305030603020308040805080604010501060102010402050206020202002d00"
        "020101001c00024001"
    ),
    # {server} extract secret "early": IKM (salt: 0, all zero octets)
    "early_secret_ikm": "0000000000000000000000000000000000000000000000000000000000000000",
    # {server} extract secret "early": secret
    "early_secret": "33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a",
    # {server} create an ephemeral x25519 key pair: private key
    "server_ephemeral_private": "b1580eeadf6dd589b8ef4f2d5652578cc810e9980191ec8d058308cea216a21e",
    # {server} create an ephemeral x25519 key pair: public key
    "server_ephemeral_public": "c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f",
    # {server} construct a ServerHello handshake message
    "server_hello": (
        "020000560303a6af06a4121860dc5e6e60249cd34c95930c8ac5cb1434dac155772ed3e2692800130100002e00330024"
        "001d0020c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f002b00020304"
    ),
    # {server} derive secret for handshake "tls13 derived": hash (SHA-256 of the empty string)
    "empty_hash": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    # {server} derive secret for handshake "tls13 derived": info (HkdfLabel)
    "hkdf_label_derived": (
        "00200d746c733133206465726976656420e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    ),
    # {server} derive secret for handshake "tls13 derived": expanded
    "derived_secret_for_handshake": "6f2615a108c702c5678f54fc9dbab69716c076189c48250cebeac3576c3611ba",
    # {server} extract secret "handshake": IKM (the X25519 shared secret)
    "ecdhe_shared_secret": "8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d",
    # {server} extract secret "handshake": secret (salt = derived_secret_for_handshake)
    "handshake_secret": "1dc826e93606aa6fdc0aadc12f741b01046aa6b99f691ed221a9f0ca043fbeac",
    # {server} derive secret "tls13 c hs traffic"/"tls13 s hs traffic": hash of ClientHello..ServerHello
    "handshake_hash_ch_sh": "860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8",
    # {server} derive secret "tls13 c hs traffic": info
    "c_hs_traffic_info": (
        "002012746c7331332063206873207472616666696320860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8"
    ),
    # {server} derive secret "tls13 c hs traffic": expanded
    "client_handshake_traffic_secret": "b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21",
    # {server} derive secret "tls13 s hs traffic": info
    "s_hs_traffic_info": (
        "002012746c7331332073206873207472616666696320860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8"
    ),
    # {server} derive secret "tls13 s hs traffic": expanded
    "server_handshake_traffic_secret": "b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38",
    # {server} derive secret for master "tls13 derived": expanded (PRK = handshake_secret)
    "derived_secret_for_master": "43de77e0c77713859a944db9db2590b53190a65b3ee2e4f12dd7a0bb7ce254b4",
    # {server} extract secret "master": secret (salt = derived_secret_for_master, IKM = 32 zero octets)
    "master_secret": "18df06843d13a08bf2a449844c5f8a478001bc4d4c627984d5a41da8d0402919",
    # {server} send handshake record: payload
    "server_hello_record_payload": (
        "020000560303a6af06a4121860dc5e6e60249cd34c95930c8ac5cb1434dac155772ed3e2692800130100002e00330024"
        "001d0020c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f002b00020304"
    ),
    # {server} send handshake record: complete record (TLSPlaintext)
    "server_hello_record": (
        "160303005a020000560303a6af06a4121860dc5e6e60249cd34c95930c8ac5cb1434dac155772ed3e269280013010000"
        "2e00330024001d0020c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f002b00020304"
    ),
    # {server} derive write traffic keys for handshake data: key info ("tls13 key", length 16)
    "hkdf_label_key": "001009746c733133206b657900",
    # {server} derive write traffic keys for handshake data: iv info ("tls13 iv", length 12)
    "hkdf_label_iv": "000c08746c73313320697600",
    # {server} derive write traffic keys for handshake data: key expanded
    "server_handshake_write_key": "3fce516009c21727d0f2e4e86ee403bc",
    # {server} derive write traffic keys for handshake data: iv expanded
    "server_handshake_write_iv": "5d313eb2671276ee13000b30",
    # {server} construct an EncryptedExtensions handshake message
    "encrypted_extensions": "080000240022000a00140012001d00170018001901000101010201030104001c0002400100000000",
    # {server} construct a Certificate handshake message (RSA certificate, CN=rsa)
    "certificate": (
        "0b0001b9000001b50001b0308201ac30820115a003020102020102300d06092a864886f70d01010b0500300e310c300a"
        "06035504031303727361301e170d3136303733303031323335395a170d3236303733303031323335395a300e310c300a"
        "0603550403130372736130819f300d06092a864886f70d010101050003818d0030818902818100b4bb498f8279303d98"
        "0836399b36c6988c0c68de55e1bdb826d3901a2461eafd2de49a91d015abbc9a95137ace6c1af19eaa6af98c7ced4312"
        "0998e187a80ee0ccb0524b1b018c3e0b63264d449a6d38e22a5fda430846748030530ef0461c8ca9d9efbfae8ea6d1d0"
        "3e2bd193eff0ab9a8002c47428a6d35a8d88d79f7f1e3f0203010001a31a301830090603551d1304023000300b060355"
        "1d0f0404030205a0300d06092a864886f70d01010b05000381810085aad2a0e5b9276b908c65f73a7267170618a54c5f"
        "8a7b337d2df7a594365417f2eae8f8a58c8f8172f9319cf36b7fd6c55b80f21a03015156726096fd335e5e67f2dbf102"
        "702e608ccae6bec1fc63a42a99be5c3eb7107c3c54e9b9eb2bd5203b1c3b84e0a8b2f759409ba3eac9d91d402dcc0cc8"
        "f8961229ac9187b42b4de10000"
    ),
    # {server} construct a CertificateVerify handshake message (rsa_pss_rsae_sha256)
    "certificate_verify": (
        "0f000084080400805a747c5d88fa9bd2e55ab085a61015b7211f824cd484145ab3ff52f1fda8477b0b7abc90db78e2d3"
        "3a5c141a078653fa6bef780c5ea248eeaaa785c4f394cab6d30bbe8d4859ee511f602957b15411ac027671459e46445c"
        "9ea58c181e818e95b8c3fb0bf3278409d3be152a3da5043e063dda65cdf5aea20d53dfacd42f74f3"
    ),
    # {server} calculate finished "tls13 finished": info (hash: empty)
    "hkdf_label_finished": "00200e746c7331332066696e697368656400",
    # {server} calculate finished "tls13 finished": expanded (PRK = server_handshake_traffic_secret)
    "server_finished_key": "008d3b66f816ea559f96b537e885c31fc068bf492c652f01f288a1d8cdc19fc8",
    # {server} calculate finished "tls13 finished": finished
    "server_finished_verify_data": "9b9b141d906337fbd2cbdce71df4deda4ab42c309572cb7fffee5454b78f0718",
    # {server} construct a Finished handshake message
    "server_finished": "140000209b9b141d906337fbd2cbdce71df4deda4ab42c309572cb7fffee5454b78f0718",
    # {server} send handshake record: payload (EncryptedExtensions..Finished, plaintext)
    "server_handshake_record_payload": (
        "080000240022000a00140012001d00170018001901000101010201030104001c00024001000000000b0001b9000001b5"
        "0001b0308201ac30820115a003020102020102300d06092a864886f70d01010b0500300e310c300a0603550403130372"
        "7361301e170d3136303733303031323335395a170d3236303733303031323335395a300e310c300a0603550403130372"
        "736130819f300d06092a864886f70d010101050003818d0030818902818100b4bb498f8279303d980836399b36c6988c"
        "0c68de55e1bdb826d3901a2461eafd2de49a91d015abbc9a95137ace6c1af19eaa6af98c7ced43120998e187a80ee0cc"
        "b0524b1b018c3e0b63264d449a6d38e22a5fda430846748030530ef0461c8ca9d9efbfae8ea6d1d03e2bd193eff0ab9a"
        "8002c47428a6d35a8d88d79f7f1e3f0203010001a31a301830090603551d1304023000300b0603551d0f0404030205a0"
        "300d06092a864886f70d01010b05000381810085aad2a0e5b9276b908c65f73a7267170618a54c5f8a7b337d2df7a594"
        "365417f2eae8f8a58c8f8172f9319cf36b7fd6c55b80f21a03015156726096fd335e5e67f2dbf102702e608ccae6bec1"
        "fc63a42a99be5c3eb7107c3c54e9b9eb2bd5203b1c3b84e0a8b2f759409ba3eac9d91d402dcc0cc8f8961229ac9187b4"
        "2b4de100000f000084080400805a747c5d88fa9bd2e55ab085a61015b7211f824cd484145ab3ff52f1fda8477b0b7abc"
        "90db78e2d33a5c141a078653fa6bef780c5ea248eeaaa785c4f394cab6d30bbe8d4859ee511f602957b15411ac027671"
        "459e46445c9ea58c181e818e95b8c3fb0bf3278409d3be152a3da5043e063dda65cdf5aea20d53dfacd42f74f3140000"
        "209b9b141d906337fbd2cbdce71df4deda4ab42c309572cb7fffee5454b78f0718"
    ),
    # {server} send handshake record: complete record (TLSCiphertext, server handshake keys)
    "server_handshake_record": (
        "17030302a2d1ff334a56f5bff6594a07cc87b580233f500f45e489e7f33af35edf7869fcf40aa40aa2b8ea73f848a7ca"
        "07612ef9f945cb960b4068905123ea78b111b429ba9191cd05d2a389280f526134aadc7fc78c4b729df828b5ecf7b13b"
        "d9aefb0e57f271585b8ea9bb355c7c79020716cfb9b1183ef3ab20e37d57a6b9d7477609aee6e122a4cf51427325250c"
        "7d0e509289444c9b3a648f1d71035d2ed65b0e3cdd0cbae8bf2d0b227812cbb360987255cc744110c453baa4fcd61092"
        "8d809810e4b7ed1a8fd991f06aa6248204797e36a6a73b70a2559c09ead686945ba246ab66e5edd8044b4c6de3fcf2a8"
        "9441ac66272fd8fb330ef8190579b3684596c960bd596eea520a56a8d650f563aad27409960dca63d3e688611ea5e22f"
        "4415cf9538d51a200c27034272968a264ed6540c84838d89f72c24461aad6d26f59ecaba9acbbb317b66d902f4f292a3"
        "6ac1b639c637ce343117b659622245317b49eeda0c6258f100d7d961ffb138647e92ea330faeea6dfa31c7a84dc3bd7e"
        "1b7a6c7178af36879018e3f252107f243d243dc7339d5684c8b0378bf30244da8c87c843f5e56eb4c5e8280a2b48052c"
        "f93b16499a66db7cca71e4599426f7d461e66f99882bd89fc50800becca62d6c74116dbd2972fda1fa80f85df881edbe"
        "5a37668936b335583b599186dc5c6918a396fa48a181d6b6fa4f9d62d513afbb992f2b992f67f8afe67f76913fa388cb"
        "5630c8ca01e0c65d11c66a1e2ac4c85977b7c7a6999bbf10dc35ae69f5515614636c0b9b68c19ed2e31c0b3b66763038"
        "ebba42f3b38edc0399f3a9f23faa63978c317fc9fa66a73f60f0504de93b5b845e275592c12335ee340bbc4fddd50278"
        "4016e4b3be7ef04dda49f4b440a30cb5d2af939828fd4ae3794e44f94df5a631ede42c1719bfdabf0253fe5175be898e"
        "750edc53370d2b"
    ),
    # {server} derive secret "tls13 c ap traffic" etc.: hash of ClientHello..server Finished
    "handshake_hash_ch_sf": "9608102a0f1ccc6db6250b7b7e417b1a000eaada3daae4777a7686c9ff83df13",
    # {server} derive secret "tls13 c ap traffic": info
    "c_ap_traffic_info": (
        "002012746c73313320632061702074726166666963209608102a0f1ccc6db6250b7b7e417b1a000eaada3daae4777a7686c9ff83df13"
    ),
    # {server} derive secret "tls13 c ap traffic": expanded (PRK = master_secret)
    "client_application_traffic_secret": "9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5",
    # {server} derive secret "tls13 s ap traffic": info
    "s_ap_traffic_info": (
        "002012746c73313320732061702074726166666963209608102a0f1ccc6db6250b7b7e417b1a000eaada3daae4777a7686c9ff83df13"
    ),
    # {server} derive secret "tls13 s ap traffic": expanded
    "server_application_traffic_secret": "a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643",
    # {server} derive secret "tls13 exp master": info
    "exp_master_info": (
        "002010746c73313320657870206d6173746572209608102a0f1ccc6db6250b7b7e417b1a000eaada3daae4777a7686c9ff83df13"
    ),
    # {server} derive secret "tls13 exp master": expanded
    "exporter_master_secret": "fe22f881176eda18eb8f44529e6792c50c9a3f89452f68d8ae311b4309d3cf50",
    # {server} derive write traffic keys for application data: key expanded
    "server_application_write_key": "9f02283b6c9c07efc26bb9f2ac92e356",
    # {server} derive write traffic keys for application data: iv expanded
    "server_application_write_iv": "cf782b88dd83549aadf1e984",
    # {server} derive read traffic keys for handshake data: key expanded (= client handshake write key)
    "client_handshake_write_key": "dbfaa693d1762c5b666af5d950258d01",
    # {server} derive read traffic keys for handshake data: iv expanded (= client handshake write iv)
    "client_handshake_write_iv": "5bd3c71b836e0b76bb73265f",
    # {client} calculate finished "tls13 finished": expanded (PRK = client_handshake_traffic_secret)
    "client_finished_key": "b80ad01015fb2f0bd65ff7d4da5d6bf83f84821d1f87fdc7d3c75b5a7b42d9c4",
    # {client} calculate finished "tls13 finished": finished
    "client_finished_verify_data": "a8ec436d677634ae525ac1fcebe11a039ec17694fac6e98527b642f2edd5ce61",
    # {client} construct a Finished handshake message
    "client_finished": "14000020a8ec436d677634ae525ac1fcebe11a039ec17694fac6e98527b642f2edd5ce61",
    # {client} send handshake record: payload
    "client_finished_record_payload": "14000020a8ec436d677634ae525ac1fcebe11a039ec17694fac6e98527b642f2edd5ce61",
    # {client} send handshake record: complete record (TLSCiphertext, client handshake keys)
    "client_finished_record": (
        "170303003575ec4dc238cce60b298044a71e219c56cc77b0517fe9b93c7a4bfc44d87f38f80338ac98fc46deb384bd1c"
        "aeacab6867d726c40546"
    ),
    # {client} derive write traffic keys for application data: key expanded
    "client_application_write_key": "17422dda596ed5d9acd890e3c63f5051",
    # {client} derive write traffic keys for application data: iv expanded
    "client_application_write_iv": "5b78923dee08579033e523d9",
    # {client} derive secret "tls13 res master": hash of ClientHello..client Finished
    "handshake_hash_ch_cf": "209145a96ee8e2a122ff810047cc952684658d6049e86429426db87c54ad143d",
    # {client} derive secret "tls13 res master": info
    "res_master_info": (
        "002010746c73313320726573206d617374657220209145a96ee8e2a122ff810047cc952684658d6049e86429426db87c54ad143d"
    ),
    # {client} derive secret "tls13 res master": expanded (PRK = master_secret)
    "resumption_master_secret": "7df235f2031d2a051287d02b0241b0bfdaf86cc856231f2d5aba46c434ec196c",
    # {server} generate resumption secret "tls13 resumption": hash (the ticket_nonce)
    "ticket_nonce": "0000",
    # {server} generate resumption secret "tls13 resumption": info
    "resumption_info": "002010746c73313320726573756d7074696f6e020000",
    # {server} generate resumption secret "tls13 resumption": expanded (the PSK used in section 4)
    "resumption_psk": "4ecd0eb6ec3b4d87f5d6028f922ca4c5851a277fd41311c9e62d2c9492e1c4f3",
    # {server} construct a NewSessionTicket handshake message
    "new_session_ticket": (
        "040000c90000001efad6aac502000000b22c035d829359ee5ff7af4ec900000000262a6494dc486d2c8a34cb33fa90bf"
        "1b0070ad3c498883c9367c09a2be785abc55cd226097a3a982117283f82a03a143efd3ff5dd36d64e861be7fd61d2827"
        "db279cce145077d454a3664d4e6da4d29ee03725a6a4dafcd0fc67d2aea70529513e3da2677fa5906c5b3f7d8f92f228"
        "bda40dda721470f9fbf297b5aea617646fac5c03272e970727c621a79141ef5f7de6505e5bfbc388e93343694093934a"
        "e4d3570008002a000400000400"
    ),
    # {server} send handshake record: payload
    "new_session_ticket_record_payload": (
        "040000c90000001efad6aac502000000b22c035d829359ee5ff7af4ec900000000262a6494dc486d2c8a34cb33fa90bf"
        "1b0070ad3c498883c9367c09a2be785abc55cd226097a3a982117283f82a03a143efd3ff5dd36d64e861be7fd61d2827"
        "db279cce145077d454a3664d4e6da4d29ee03725a6a4dafcd0fc67d2aea70529513e3da2677fa5906c5b3f7d8f92f228"
        "bda40dda721470f9fbf297b5aea617646fac5c03272e970727c621a79141ef5f7de6505e5bfbc388e93343694093934a"
        "e4d3570008002a000400000400"
    ),
    # {server} send handshake record: complete record (server application keys, seq 0)
    "new_session_ticket_record": (
        "17030300de3a6b8f90414a97d6959c3487680de5134a2b240e6cffac116e95d41d6af8f6b580dcf3d11d63c758db289a"
        "015940252f55713e061dc13e078891a38efbcf5753ad8ef170ad3c7353d16d9da773b9ca7f2b9fa1b6c0d4a3d03f75e0"
        "9c30ba1e62972ac46f75f7b981be63439b2999ce13064615139891d5e4c5b406f16e3fc181a77ca475840025db2f0a77"
        "f81b5ab05b94c01346755f69232c86519d86cbeeac87aac347d143f9605d64f650db4d023e70e952ca49fe5137121c74"
        "bc2697687e248746d6df353005f3bce18696129c8153556b3b6c6779b37bf15985684f"
    ),
    # {client} send application_data record: payload
    "client_application_data_payload": (
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031"
    ),
    # {client} send application_data record: complete record (seq 0)
    "client_application_data_record": (
        "1703030043a23f7054b62c94d0affafe8228ba55cbefacea42f914aa66bcab3f2b9819a8a5b46b395bd54a9a20441e2b"
        "62974e1f5a6292a2977014bd1e3deae63aeebb21694915e4"
    ),
    # {server} send application_data record: payload
    "server_application_data_payload": (
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031"
    ),
    # {server} send application_data record: complete record (seq 1)
    "server_application_data_record": (
        "17030300432e937e11ef4ac740e538ad36005fc4a46932fc3225d05f82aa1b36e30efaf97d90e6dffc602dcb501a59a8"
        "fcc49c4bf2e5f0a21c0047c2abf332540dd032e167c2955d"
    ),
    # {client} send alert record: payload (close_notify)
    "client_alert_payload": "0100",
    # {client} send alert record: complete record (seq 1)
    "client_alert_record": "1703030013c9872760655666b74d7ff1153efd6db6d0b0e3",
    # {server} send alert record: payload (close_notify)
    "server_alert_payload": "0100",
    # {server} send alert record: complete record (seq 2)
    "server_alert_record": "1703030013b58fd67166ebf599d24720cfbe7efa7a8864a9",
}


# Section 4, "Resumed 0-RTT Handshake" (PSK from SIMPLE_1RTT["resumption_psk"], with 0-RTT data).
RESUMED_0RTT: dict[str, str] = {
    # {client} create an ephemeral x25519 key pair: private key
    "client_ephemeral_private": "bff91188283846dd6a2134ef7180ca2b0b14fb10dce707b5098c0dddc813b2df",
    # {client} create an ephemeral x25519 key pair: public key
    "client_ephemeral_public": "e4ffb68ac05f8d96c99da26698346c6be16482badddafe051a66b4f18d668f0b",
    # {client} extract secret "early": IKM (= SIMPLE_1RTT["resumption_psk"]; salt: 0, all zero octets)
    "psk": "4ecd0eb6ec3b4d87f5d6028f922ca4c5851a277fd41311c9e62d2c9492e1c4f3",
    # {client} extract secret "early": secret
    "early_secret": "9b2188e9b2fc6d64d71dc329900e20bb41915000f678aa839cbb797cb7d8332c",
    # {client} calculate PSK binder: ClientHello prefix (477 octets), i.e. the ClientHello truncated before the binders
    # list. The RFC prints this same value under "construct a ClientHello handshake message" as well.
    "client_hello_prefix": (
        "010001fc03031bc3ceb6bbe39cff938355b5a50adb6db21b7a6af649d7b4bc419d7876487d9500000613011303130201"
        "0001cd0000000b0009000006736572766572ff01000100000a00140012001d0017001800190100010101020103010400"
        "3300260024001d0020e4ffb68ac05f8d96c99da26698346c6be16482badddafe051a66b4f18d668f0b002a0000002b00"
        "03020304000d0020001e040305030603020308040805080604010501060102010402050206020202002d00020101001c"
        "000240010015005700000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "2900dd00b800b22c035d829359ee5ff7af4ec900000000262a6494dc486d2c8a34cb33fa90bf1b0070ad3c498883c936"
        "7c09a2be785abc55cd226097a3a982117283f82a03a143efd3ff5dd36d64e861be7fd61d2827db279cce145077d454a3"
        "664d4e6da4d29ee03725a6a4dafcd0fc67d2aea70529513e3da2677fa5906c5b3f7d8f92f228bda40dda721470f9fbf2"
        "97b5aea617646fac5c03272e970727c621a79141ef5f7de6505e5bfbc388e93343694093934ae4d357fad6aacb"
    ),
    # {client} calculate PSK binder: binder hash (SHA-256 of client_hello_prefix)
    "binder_hash": "63224b2e4573f2d3454ca84b9d009a04f6be9e05711a8396473aefa01e924a14",
    # {client} calculate PSK binder: PRK (binder_key = Derive-Secret(early_secret, "res binder", ""))
    "binder_key": "69fe131a3bbad5d63c64eebcc30e395b9d8107726a13d074e389dbc8a4e47256",
    # {client} calculate PSK binder: expanded ("tls13 finished", hash: empty)
    "binder_finished_key": "5588673e72cb59c87d220caffe94f2dea9a3b1609f7d50e90a48227db9ed7eaa",
    # {client} calculate PSK binder: finished (the PSK binder value)
    "binder": "3add4fb2d8fdf822a0ca3cf7678ef5e88dae990141c5924d57bb6fa31b9e5f9d",
    # complete ClientHello with binders (= client_hello_record_payload, 512 octets)
    "client_hello": (
        "010001fc03031bc3ceb6bbe39cff938355b5a50adb6db21b7a6af649d7b4bc419d7876487d9500000613011303130201"
        "0001cd0000000b0009000006736572766572ff01000100000a00140012001d0017001800190100010101020103010400"
        "3300260024001d0020e4ffb68ac05f8d96c99da26698346c6be16482badddafe051a66b4f18d668f0b002a0000002b00"
        "03020304000d0020001e040305030603020308040805080604010501060102010402050206020202002d00020101001c"
        "000240010015005700000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "2900dd00b800b22c035d829359ee5ff7af4ec900000000262a6494dc486d2c8a34cb33fa90bf1b0070ad3c498883c936"
        "7c09a2be785abc55cd226097a3a982117283f82a03a143efd3ff5dd36d64e861be7fd61d2827db279cce145077d454a3"
        "664d4e6da4d29ee03725a6a4dafcd0fc67d2aea70529513e3da2677fa5906c5b3f7d8f92f228bda40dda721470f9fbf2"
        "97b5aea617646fac5c03272e970727c621a79141ef5f7de6505e5bfbc388e93343694093934ae4d357fad6aacb002120"
        "3add4fb2d8fdf822a0ca3cf7678ef5e88dae990141c5924d57bb6fa31b9e5f9d"
    ),
    # {client} send handshake record: payload
    "client_hello_record_payload": (
        "010001fc03031bc3ceb6bbe39cff938355b5a50adb6db21b7a6af649d7b4bc419d7876487d9500000613011303130201"
        "0001cd0000000b0009000006736572766572ff01000100000a00140012001d0017001800190100010101020103010400"
        "3300260024001d0020e4ffb68ac05f8d96c99da26698346c6be16482badddafe051a66b4f18d668f0b002a0000002b00"
        "03020304000d0020001e040305030603020308040805080604010501060102010402050206020202002d00020101001c"
        "000240010015005700000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "2900dd00b800b22c035d829359ee5ff7af4ec900000000262a6494dc486d2c8a34cb33fa90bf1b0070ad3c498883c936"
        "7c09a2be785abc55cd226097a3a982117283f82a03a143efd3ff5dd36d64e861be7fd61d2827db279cce145077d454a3"
        "664d4e6da4d29ee03725a6a4dafcd0fc67d2aea70529513e3da2677fa5906c5b3f7d8f92f228bda40dda721470f9fbf2"
        "97b5aea617646fac5c03272e970727c621a79141ef5f7de6505e5bfbc388e93343694093934ae4d357fad6aacb002120"
        "3add4fb2d8fdf822a0ca3cf7678ef5e88dae990141c5924d57bb6fa31b9e5f9d"
    ),
    # {client} send handshake record: complete record (TLSPlaintext)
    "client_hello_record": (
        "1603010200010001fc03031bc3ceb6bbe39cff938355b5a50adb6db21b7a6af649d7b4bc419d7876487d950000061301"
        "13031302010001cd0000000b0009000006736572766572ff01000100000a00140012001d001700180019010001010102"
        "01030104003300260024001d0020e4ffb68ac05f8d96c99da26698346c6be16482badddafe051a66b4f18d668f0b002a"
        "0000002b0003020304000d0020001e040305030603020308040805080604010501060102010402050206020202002d00"
        "020101001c00024001001500570000000000000000000000000000000000000000000000000000000000000000000000"
        "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
        "00000000002900dd00b800b22c035d829359ee5ff7af4ec900000000262a6494dc486d2c8a34cb33fa90bf1b0070ad3c"
        "498883c9367c09a2be785abc55cd226097a3a982117283f82a03a143efd3ff5dd36d64e861be7fd61d2827db279cce14"
        "5077d454a3664d4e6da4d29ee03725a6a4dafcd0fc67d2aea70529513e3da2677fa5906c5b3f7d8f92f228bda40dda72"
        "1470f9fbf297b5aea617646fac5c03272e970727c621a79141ef5f7de6505e5bfbc388e93343694093934ae4d357fad6"
        "aacb0021203add4fb2d8fdf822a0ca3cf7678ef5e88dae990141c5924d57bb6fa31b9e5f9d"
    ),
    # {client} derive secret "tls13 c e traffic"/"tls13 e exp master": hash of the complete ClientHello
    "handshake_hash_ch": "08ad0fa05d7c7233b1775ba2ff9f4c5b8b59276b7f227f13a976245f5d960913",
    # {client} derive secret "tls13 c e traffic": info
    "c_e_traffic_info": (
        "002011746c7331332063206520747261666669632008ad0fa05d7c7233b1775ba2ff9f4c5b8b59276b7f227f13a976245f5d960913"
    ),
    # {client} derive secret "tls13 c e traffic": expanded
    "client_early_traffic_secret": "3fbbe6a60deb66c30a32795aba0eff7eaa10105586e7be5c09678d63b6caab62",
    # {client} derive secret "tls13 e exp master": info
    "e_exp_master_info": (
        "002012746c733133206520657870206d61737465722008ad0fa05d7c7233b1775ba2ff9f4c5b8b59276b7f227f13a976245f5d960913"
    ),
    # {client} derive secret "tls13 e exp master": expanded
    "early_exporter_master_secret": "b2026866610937d7423e5be90862ccf24c0e6091186d34f812089ff5be2ef7df",
    # {client} derive write traffic keys for early application data: key info
    "hkdf_label_key": "001009746c733133206b657900",
    # {client} derive write traffic keys for early application data: iv info
    "hkdf_label_iv": "000c08746c73313320697600",
    # {client} derive write traffic keys for early application data: key expanded
    "client_early_write_key": "920205a5b7bf2115e6fc5c2942834f54",
    # {client} derive write traffic keys for early application data: iv expanded
    "client_early_write_iv": "6d475f0993c8e564610db2b9",
    # {client} send application_data record (0-RTT): payload
    "early_application_data_payload": "414243444546",
    # {client} send application_data record (0-RTT): complete record (early keys, seq 0)
    "early_application_data_record": "1703030017ab1df420e75c457a7cc5d2844f76d5aee4b4edbf049be0",
    # {server} create an ephemeral x25519 key pair: private key
    "server_ephemeral_private": "de5b4476e7b490b2652d338acbf2948066f255f9440e23b98fc69835298dc107",
    # {server} create an ephemeral x25519 key pair: public key
    "server_ephemeral_public": "121761ee42c333e1b9e77b60dd57c2053cd94512ab47f115e86eff50942cea31",
    # {server} construct a ServerHello handshake message (selects PSK 0)
    "server_hello": (
        "0200005c03033ccfd2dec890222763472ae8136777c9d7358777bb66e91ea5122495f559ea2d00130100003400290002"
        "000000330024001d0020121761ee42c333e1b9e77b60dd57c2053cd94512ab47f115e86eff50942cea31002b00020304"
    ),
    # {server} derive secret for handshake "tls13 derived": hash (SHA-256 of the empty string)
    "empty_hash": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    # {server} derive secret for handshake "tls13 derived": info
    "hkdf_label_derived": (
        "00200d746c733133206465726976656420e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    ),
    # {server} derive secret for handshake "tls13 derived": expanded
    "derived_secret_for_handshake": "5f1790bbd82c5e7d376ed2e1e52f8e6038c9346db61b43be9a52f77ef3998e80",
    # {server} extract secret "handshake": IKM (the X25519 shared secret)
    "ecdhe_shared_secret": "f44194756ff9ec9d25180635d66ea6824c6ab3bf179977be37f723570e7ccb2e",
    # {server} extract secret "handshake": secret
    "handshake_secret": "005cb112fd8eb4ccc623bb88a07c64b3ede1605363fc7d0df8c7ce4ff0fb4ae6",
    # {server} derive secret "tls13 c hs traffic"/"tls13 s hs traffic": hash of ClientHello..ServerHello
    "handshake_hash_ch_sh": "f736cb34fe25e701551bee6fd24c1cc7102a7daf9405cb15d97aafe16f757d03",
    # {server} derive secret "tls13 c hs traffic": info
    "c_hs_traffic_info": (
        "002012746c7331332063206873207472616666696320f736cb34fe25e701551bee6fd24c1cc7102a7daf9405cb15d97aafe16f757d03"
    ),
    # {server} derive secret "tls13 c hs traffic": expanded
    "client_handshake_traffic_secret": "2faac08f851d35fea3604fcb4de82dc62c9b164a70974d0462e27f1ab278700f",
    # {server} derive secret "tls13 s hs traffic": info
    "s_hs_traffic_info": (
        "002012746c7331332073206873207472616666696320f736cb34fe25e701551bee6fd24c1cc7102a7daf9405cb15d97aafe16f757d03"
    ),
    # {server} derive secret "tls13 s hs traffic": expanded
    "server_handshake_traffic_secret": "fe927ae271312e8bf0275b581c54eef020450dc4ecffaa05a1a35d27518e7803",
    # {server} derive secret for master "tls13 derived": expanded
    "derived_secret_for_master": "e2f16030251df0874ba19b9aba257610bc6d531c1dd206df0ca6e84ae2a26742",
    # {server} extract secret "master": secret (IKM = 32 zero octets)
    "master_secret": "e2d32d4ed66dd37897a0e80c84107503ce58bf8aad4cb55a5002d77ecb890ece",
    # {server} send handshake record: payload
    "server_hello_record_payload": (
        "0200005c03033ccfd2dec890222763472ae8136777c9d7358777bb66e91ea5122495f559ea2d00130100003400290002"
        "000000330024001d0020121761ee42c333e1b9e77b60dd57c2053cd94512ab47f115e86eff50942cea31002b00020304"
    ),
    # {server} send handshake record: complete record (TLSPlaintext)
    "server_hello_record": (
        "16030300600200005c03033ccfd2dec890222763472ae8136777c9d7358777bb66e91ea5122495f559ea2d0013010000"
        "3400290002000000330024001d0020121761ee42c333e1b9e77b60dd57c2053cd94512ab47f115e86eff50942cea3100"
        "2b00020304"
    ),
    # {server} derive write traffic keys for handshake data: key expanded
    "server_handshake_write_key": "27c6bdc0a3dcea39a47326d79bc9e4ee",
    # {server} derive write traffic keys for handshake data: iv expanded
    "server_handshake_write_iv": "9569ecdd4d0536705e9ef725",
    # {server} construct an EncryptedExtensions handshake message (with early_data)
    "encrypted_extensions": "080000280026000a00140012001d00170018001901000101010201030104001c0002400100000000002a0000",
    # {server} calculate finished "tls13 finished": info (hash: empty)
    "hkdf_label_finished": "00200e746c7331332066696e697368656400",
    # {server} calculate finished "tls13 finished": expanded
    "server_finished_key": "4bb74cae7a5dc8914604c0bfbe2f0c062396883922bec8a15e2a9b532a5d392c",
    # {server} calculate finished "tls13 finished": finished
    "server_finished_verify_data": "48d3e0e1b3d907c6acff145e16090388c77b05c050b634ab1a88bbd0dd1a34b2",
    # {server} construct a Finished handshake message
    "server_finished": "1400002048d3e0e1b3d907c6acff145e16090388c77b05c050b634ab1a88bbd0dd1a34b2",
    # {server} send handshake record: payload (EncryptedExtensions + Finished)
    "server_handshake_record_payload": (
        "080000280026000a00140012001d00170018001901000101010201030104001c0002400100000000002a000014000020"
        "48d3e0e1b3d907c6acff145e16090388c77b05c050b634ab1a88bbd0dd1a34b2"
    ),
    # {server} send handshake record: complete record (server handshake keys, seq 0)
    "server_handshake_record": (
        "1703030061dc48237b4b879f50d0d4d262ea8b4716eb40ddc1eb957e11126e8a7149c2d012d37a7115957e64ce30008b"
        "9e0323f2c05a9c1c77b4f37849a695ab255060a33fee770ca95cb8486bfd0843b87024865ca35cc41c4e515c64dcb136"
        "9f98635bc7a5"
    ),
    # {server} derive secret "tls13 c ap traffic" etc.: hash of ClientHello..server Finished
    "handshake_hash_ch_sf": "b0aeffc46a2cfe33114e6fd7d51f9f04b1ca3c497dab08934a774a9d9ad7dbf3",
    # {server} derive secret "tls13 c ap traffic": info
    "c_ap_traffic_info": (
        "002012746c7331332063206170207472616666696320b0aeffc46a2cfe33114e6fd7d51f9f04b1ca3c497dab08934a774a9d9ad7dbf3"
    ),
    # {server} derive secret "tls13 c ap traffic": expanded
    "client_application_traffic_secret": "2abbf2b8e381d23dbebe1dd2a7d16a8bf484cb4950d23fb7fb7fa8547062d9a1",
    # {server} derive secret "tls13 s ap traffic": info
    "s_ap_traffic_info": (
        "002012746c7331332073206170207472616666696320b0aeffc46a2cfe33114e6fd7d51f9f04b1ca3c497dab08934a774a9d9ad7dbf3"
    ),
    # {server} derive secret "tls13 s ap traffic": expanded
    "server_application_traffic_secret": "cc21f1bf8feb7dd5fa505bd9c4b468a9984d554a993dc49e6d285598fb672691",
    # {server} derive secret "tls13 exp master": info
    "exp_master_info": (
        "002010746c73313320657870206d617374657220b0aeffc46a2cfe33114e6fd7d51f9f04b1ca3c497dab08934a774a9d9ad7dbf3"
    ),
    # {server} derive secret "tls13 exp master": expanded
    "exporter_master_secret": "3fd93d4ffddc98e64b14dd107aedf8ee4add23f4510f58a4592d0b201bee56b4",
    # {server} derive write traffic keys for application data: key expanded
    "server_application_write_key": "e857c690a34c5a9129d833619684f95e",
    # {server} derive write traffic keys for application data: iv expanded
    "server_application_write_iv": "0685d6b561aab9ef1013faf9",
    # {client} construct an EndOfEarlyData handshake message
    "end_of_early_data": "05000000",
    # {client} send handshake record: payload
    "end_of_early_data_record_payload": "05000000",
    # {client} send handshake record: complete record (early keys, seq 1)
    "end_of_early_data_record": "1703030015aca6fc944841298df99593725f9bf9754429b12f09",
    # {client} derive write traffic keys for handshake data: key expanded
    "client_handshake_write_key": "b1530806f4adfeac83f1413032bbfa82",
    # {client} derive write traffic keys for handshake data: iv expanded
    "client_handshake_write_iv": "eb50c16be7654abf99dd06d9",
    # {client} calculate finished "tls13 finished": expanded
    "client_finished_key": "5ace394c26980d581243f627d1150ae27e37fa52364e0a7f20ac686d09cd0e8e",
    # {client} calculate finished "tls13 finished": finished (transcript ClientHello..EndOfEarlyData)
    "client_finished_verify_data": "7230a9c952c25cd6138fc5e6628308c41c5335dd81b9f96bcea50fd32bda416d",
    # {client} construct a Finished handshake message
    "client_finished": "140000207230a9c952c25cd6138fc5e6628308c41c5335dd81b9f96bcea50fd32bda416d",
    # {client} send handshake record: payload
    "client_finished_record_payload": "140000207230a9c952c25cd6138fc5e6628308c41c5335dd81b9f96bcea50fd32bda416d",
    # {client} send handshake record: complete record (client handshake keys, seq 0)
    "client_finished_record": (
        "170303003500f8b467d14cf22a4b3f0b6ae0d8e6cc8d08e0db3515ef5c2bdf1922eafbb70009964716d834fb70c3d2a5"
        "6c5b1f5f6bdba6c333cf"
    ),
    # {client} derive write traffic keys for application data: key expanded
    "client_application_write_key": "3cf122f301c6358ca7989553250efd72",
    # {client} derive write traffic keys for application data: iv expanded
    "client_application_write_iv": "ab1aec26aa78b8fc1176b9ac",
    # {client} derive secret "tls13 res master": hash of ClientHello..client Finished (incl. EndOfEarlyData)
    "handshake_hash_ch_cf": "c3c122e0bd907a4a3ff6112d8fd53dbf89c773d9552e8b6b9d56d361b3a97bf6",
    # {client} derive secret "tls13 res master": info
    "res_master_info": (
        "002010746c73313320726573206d617374657220c3c122e0bd907a4a3ff6112d8fd53dbf89c773d9552e8b6b9d56d361b3a97bf6"
    ),
    # {client} derive secret "tls13 res master": expanded
    "resumption_master_secret": "5e95bdf1f89005ea2e9aa0ba85e728e3c19c5fe0c699e3f5bee59faebd0b5406",
    # {client} send application_data record: payload
    "client_application_data_payload": (
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031"
    ),
    # {client} send application_data record: complete record (seq 0)
    "client_application_data_record": (
        "1703030043b1cebce242aa201be9ae5e1cb2a9aa4b33d4e866af1edb068919237741aa031d7a74d491c99b9d4e232b74"
        "206bc6fbaa04fe78be44a9b4f54320a17eb76992afac3103"
    ),
    # {server} send application_data record: payload
    "server_application_data_payload": (
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031"
    ),
    # {server} send application_data record: complete record (seq 0)
    "server_application_data_record": (
        "1703030043275e9f20acff57bc000657d3867df039cccf79047884cf75771746f740b5a83f462a0954c3581393a203a2"
        "5a7dd14141ef1a37900cdb62ff62dee1ba39ab2590cbf194"
    ),
    # {client} send alert record: payload (close_notify)
    "client_alert_payload": "0100",
    # {client} send alert record: complete record (seq 1)
    "client_alert_record": "17030300130facce3246bdfc6369838d6a82ae6de5d422dc",
    # {server} send alert record: payload (close_notify)
    "server_alert_payload": "0100",
    # {server} send alert record: complete record (seq 1)
    "server_alert_record": "17030300135b18af444e8e1eec7158fb62d8f2577d37ba5d",
}
