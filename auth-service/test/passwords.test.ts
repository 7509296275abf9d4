// scrypt password hashing with the production cost.
import t from 'tap';
import { hashPassword, SCRYPT_DEFAULTS, verifyDummyPassword, verifyPassword } from '../src/passwords.js';

t.test('hash and verify with the default cost (N=2^15, r=8, p=1)', async (t) => {
  const hash = await hashPassword('correct horse battery staple');
  t.match(hash, /^scrypt\$15\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
  t.equal(SCRYPT_DEFAULTS.log2N, 15);
  t.equal(await verifyPassword('correct horse battery staple', hash), true);
  t.equal(await verifyPassword('correct horse battery stapler', hash), false);
  t.not(await hashPassword('correct horse battery staple'), hash, 'a fresh salt each time');
});

t.test('Unicode passwords are normalized (NFKC)', async (t) => {
  const hash = await hashPassword('caf\u00e9 au lait', { log2N: 12, r: 8, p: 1 });
  t.equal(await verifyPassword('cafe\u0301 au lait', hash), true, 'composed and decomposed forms match');
});

t.test('unreadable hashes never verify and never throw', async (t) => {
  for (const bad of ['', 'plain', 'scrypt$15$8$1$$', 'scrypt$40$8$1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAA', 'bcrypt$2b$10$abc', 'scrypt$x$8$1$AAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAA']) {
    t.equal(await verifyPassword('anything', bad), false, JSON.stringify(bad));
  }
});

t.test('the dummy check (unknown users) always fails', async (t) => {
  t.equal(await verifyDummyPassword('dummy password for unknown users'), false);
});
